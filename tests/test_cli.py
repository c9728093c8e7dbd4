"""The CLI front door: bad input exits 2 with one clear message and creates nothing."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cockpit(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_help_lists_commands_and_exit_codes():
    out = cockpit("--help").stdout
    for word in ("run", "attach", "show", "gate", "stop", "resume", "exit codes"):
        assert word in out


def test_config_error_exits_2_names_the_line_and_creates_no_run(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', lr: 3}\n")
    runs = tmp_path / "runs"
    done = cockpit("run", str(bad), "--batch", "--runs-dir", str(runs))
    assert done.returncode == 2
    assert f"{bad}:3: stages.0.lr: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_missing_config_and_unknown_run_are_clear_errors(tmp_path):
    runs = str(tmp_path / "runs")
    done = cockpit("run", str(tmp_path / "nope.yaml"), "--batch", "--runs-dir", runs)
    assert done.returncode == 2 and "config file not found" in done.stderr
    for args in (("show", "nope"), ("gate", "nope", "sft", "approve"), ("stop", "latest"), ("resume", "x")):
        done = cockpit(*args, "--runs-dir", runs)
        assert done.returncode == 2 and "Traceback" not in done.stderr, args


def test_unwritable_runs_dir_is_a_clear_error(tmp_path):
    runs = tmp_path / "file-not-dir"
    runs.write_text("")
    done = cockpit("run", "--batch", "--runs-dir", str(runs / "sub"))
    assert done.returncode == 2 and "cannot be created" in done.stderr


def test_runs_lists_nothing_politely(tmp_path):
    done = cockpit("runs", "--runs-dir", str(tmp_path))
    assert done.returncode == 0 and "no runs" in done.stdout


def test_piped_show_and_runs_cut_no_cell(tmp_path):
    from recorded import build_recorded_run
    runs = tmp_path / "runs"
    paths = build_recorded_run(runs, "finished")
    show = cockpit("show", paths.id, "--runs-dir", str(runs))
    listed = cockpit("runs", "--runs-dir", str(runs))
    assert show.returncode == listed.returncode == 0
    for header in ("eval/accuracy", "eval/perplexity", "gate"):
        assert header in show.stdout, show.stdout
    assert "…" not in show.stdout + listed.stdout and paths.id in listed.stdout
    assert "\x1b[" not in show.stdout  # no colour codes in a pipe


def test_quitting_the_cockpit_on_a_live_run_exits_4_and_says_how_to_come_back(tmp_path, monkeypatch, capsys):
    import os
    import time

    from cli import main as cli_main
    from core.store import RunStore
    from recorded import build_recorded_run
    paths = build_recorded_run(tmp_path / "runs", "finished")
    # the TUI itself needs a terminal: stand in for the operator pressing q on this run
    monkeypatch.setattr("tui.app.run_app", lambda directory, run: paths)
    assert cli_main._open_tui(tmp_path / "runs", paths) == 0  # its supervisor is gone: nothing goes on
    with RunStore(paths.db) as store:
        store.set_meta(supervisor_pid=os.getpid(), heartbeat=time.time())  # this process stands for it
    assert cli_main._open_tui(tmp_path / "runs", paths) == cli_main.EXIT_DETACHED == 4
    assert f"cockpit attach {paths.id}" in capsys.readouterr().out
