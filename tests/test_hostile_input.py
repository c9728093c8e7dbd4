"""Hostile or careless input is refused before anything is created: names, rewards, sizes, second supervisors.

Each test is a probe from issue 10 that got through before; `cockpit` runs as a real subprocess.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError, SpecError
from core.yaml_lines import MAX_CONFIG_BYTES
from test_faults import ROOT, cockpit, events, loss_steps, wait_for

pytestmark = pytest.mark.faults

GRPO = """
name: {name}
stages:
  - name: rl
    kind: grpo
    data: {data}
    rewards: {rewards}
    train: {{steps: 2, batch_size: 2, num_generations: 2, max_completion_length: 4}}
"""


def grpo_config(tmp_path: Path, rewards: str = "[exact_match]", name: str = "probe",
                data: str = "builtin:arithmetic-prompts") -> Path:
    path = tmp_path / "probe.yaml"
    path.write_text(GRPO.format(name=name, rewards=rewards, data=data))
    return path


def refused(done: subprocess.CompletedProcess, runs: Path, *words: str) -> None:
    """Exit 2, one clear error line set without a traceback, nothing created."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def test_a_run_name_cannot_leave_the_runs_directory(tmp_path):
    runs = tmp_path / "deep" / "runs"
    done = cockpit("run", str(grpo_config(tmp_path, name="../../../escaped")), "--batch", runs=runs)
    refused(done, runs, "probe.yaml:2: name:", "not a safe name")
    assert not list(tmp_path.rglob("*escaped*"))
    done = cockpit("run", str(grpo_config(tmp_path)), "--batch", "--set", "name=a/b", runs=runs)
    refused(done, runs, "not a safe name")


def test_an_unknown_reward_is_a_config_error_with_a_suggestion(tmp_path):
    runs = tmp_path / "runs"
    done = cockpit("run", str(grpo_config(tmp_path, rewards="[exact_mach]")), "--batch", runs=runs)
    refused(done, runs, "probe.yaml:7: stages.0.rewards.0", "did you mean 'exact_match'")


def test_code_exec_is_a_registry_reward_and_its_rows_need_tests(tmp_path):
    from workers.code_rewards import code_exec
    from workers.rewards import get_rewards
    rows = tmp_path / "code.jsonl"
    rows.write_text(json.dumps({"prompt": "write add(a, b)", "tests": ["assert add(1, 2) == 3"]}) + "\n")
    cur = load_curriculum(grpo_config(tmp_path, rewards="[code_exec]", data=str(rows)))
    assert cur.stages[0].rewards == ["code_exec"]
    assert get_rewards(cur.stages[0].rewards) == [code_exec]
    weak = get_rewards(cur.stages[0].rewards, sandbox="weak")[0]  # the `sandbox: weak` opt-in
    assert weak.__name__ == "code_exec" and weak.keywords == {"allow_weak": True}
    rows.write_text(json.dumps({"prompt": "write add(a, b)"}) + "\n")
    with pytest.raises(ConfigError, match="tests"):
        load_curriculum(grpo_config(tmp_path, rewards="[code_exec]", data=str(rows)))


def test_a_module_reward_is_never_imported_from_the_working_directory(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "pwn.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "def reward(prompts, completions, **_):\n    return [1.0] * len(completions)\n")
    config = grpo_config(tmp_path, rewards="['pwn:reward']")
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "cli.main", "check", str(config)], cwd=tmp_path, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    refused(done, runs, "not from an installed package", "./pwn.py:reward")
    here = os.getcwd()
    os.chdir(tmp_path)  # where a worker started from that directory would look
    try:
        from workers.rewards import get_rewards
        with pytest.raises(SpecError, match="installed package"):
            get_rewards(["pwn:reward"])
    finally:
        os.chdir(here)
    assert not marker.exists()


def test_a_reward_file_the_yaml_names_is_loaded_by_its_path(tmp_path):
    from workers.rewards import get_rewards
    (tmp_path / "mine.py").write_text("def score(prompts, completions, **_):\n    return [0.5] * len(completions)\n")
    cur = load_curriculum(grpo_config(tmp_path, rewards="['./mine.py:score']"))
    assert cur.stages[0].rewards == [f"{tmp_path / 'mine.py'}:score"]
    assert get_rewards(cur.stages[0].rewards)[0](None, ["a", "b"]) == [0.5, 0.5]
    with pytest.raises(ConfigError, match="reward './missing.py:score': file './missing.py' not found"):
        load_curriculum(grpo_config(tmp_path, rewards="['./missing.py:score']"))


def test_an_oversize_config_is_refused_at_once_naming_the_limit(tmp_path):
    big = tmp_path / "big.yaml"
    stage = "  - {name: s%d, kind: eval}\n"
    with open(big, "w") as f:
        f.write("name: big\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n")
        for i in range(MAX_CONFIG_BYTES // 20):
            f.write(stage % i)
    runs = tmp_path / "runs"
    refused(cockpit("run", str(big), "--batch", runs=runs), runs, "big.yaml", f"{MAX_CONFIG_BYTES:,} bytes")


def test_an_absurd_stage_count_is_refused_naming_the_limit(tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("name: many\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    + "".join(f"  - {{name: s{i}, kind: eval}}\n" for i in range(400)))
    runs = tmp_path / "runs"
    refused(cockpit("run", str(many), "--batch", runs=runs), runs, "many.yaml:2: stages", "the limit is 128")


def test_a_fifo_instead_of_a_config_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    runs = tmp_path / "runs"
    refused(cockpit("check", str(fifo), runs=runs), runs, "not a regular file")


def test_check_prints_the_plan_and_creates_nothing(tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "cli.main", "check", "configs/demo.yaml", "--set", "seed=3"],
                          cwd=ROOT, text=True, capture_output=True, env={**os.environ, "COCKPIT_RUNS_DIR": str(runs)})
    assert done.returncode == 0, done.stderr
    for words in ("pretrain", "← sft", "reward exact_match", "eval/accuracy >= sft + 0.005", "manual approval",
                  "demo.yaml: ok (5 stages"):
        assert words in done.stdout, done.stdout
    assert not runs.exists()
    bad = cockpit("check", "configs/demo.yaml", "--set", "stages.grpo.rewards=[nope]", "--set",
                  "stages.dpo.rewards=[exact_macth]", runs=runs)
    refused(bad, runs, "stages.3.rewards.0: unknown reward 'nope'", "stages.2.rewards.0: unknown reward 'exact_macth'")


SLOW_STAGE = """
name: locked
stages:
  - name: pretrain
    kind: pretrain
    data: "builtin:arithmetic-text"
    train: {steps: 30, batch_size: 8, lr: 1.0e-3, logging_steps: 1, max_length: 32}
    eval: false
"""


def test_two_resumes_at_once_start_one_supervisor(tmp_path):
    from core.launch import new_run
    cfg = tmp_path / "locked.yaml"
    cfg.write_text(SLOW_STAGE)
    runs = tmp_path / "runs"
    paths = new_run(cfg, runs)
    both = [cockpit("resume", paths.id, "--batch", runs=runs, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes == [0, 2], outs
    assert "already supervised" in outs[[p.returncode for p in both].index(2)] or \
        "still running" in outs[[p.returncode for p in both].index(2)], outs
    assert sorted(loss_steps(paths.root)) == list(range(1, 31))
    assert len(events(paths.root, "run_finished")) == 1


def test_a_second_supervisor_process_exits_2_and_touches_nothing(tmp_path):
    from core.launch import new_run
    from core.supervisor import start_detached
    cfg = tmp_path / "locked.yaml"
    cfg.write_text(SLOW_STAGE.replace("steps: 30", "steps: 400"))
    runs = tmp_path / "runs"
    paths = new_run(cfg, runs)
    pid = start_detached(paths)
    try:
        wait_for(lambda: loss_steps(paths.root), what="training")
        before = len(events(paths.root, "log"))
        second = subprocess.run([sys.executable, "-m", "cli.supervise", str(paths.root)], cwd=ROOT, text=True,
                                capture_output=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"already supervised (pid {pid})" in second.stderr
        assert len(events(paths.root, "log")) == before
        newer = new_run(cfg, runs)  # `latest` is now a run that is not running
        stopped = cockpit("stop", runs=runs)  # no RUN: the one that is running, not the latest
        assert stopped.returncode == 0 and paths.id in stopped.stdout, stopped.stdout + stopped.stderr
    finally:
        cockpit("stop", paths.id, runs=runs)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=60, what="supervisor exit")
    assert newer.id != paths.id


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_failed_stage_records_the_exception_not_log_lines(tmp_path):
    rows = tmp_path / "text.jsonl"
    rows.write_text("".join(json.dumps({"text": f"{i}+1={i + 1}"}) + "\n" for i in range(50)))
    cfg = tmp_path / "gone.yaml"
    cfg.write_text(SLOW_STAGE.replace('"builtin:arithmetic-text"', str(rows)))
    runs = tmp_path / "runs"
    from core.launch import new_run
    paths = new_run(cfg, runs)
    rows.unlink()  # the data vanish between the check and the run
    done = cockpit("resume", paths.id, "--batch", runs=runs)
    assert done.returncode == 1, done.stdout
    show = json.loads(cockpit("show", paths.id, "--json", runs=runs).stdout)
    reason = show["stages"][0]["reason"]
    assert reason.startswith(("FileNotFoundError: ", "DataError: ")) and "text.jsonl" in reason, reason
    assert "\n" not in reason and "Traceback" not in reason
    assert reason in done.stdout


def test_a_reason_without_a_record_is_the_traceback_line_never_metric_noise(tmp_path):
    from core.worker_proc import exit_reason
    log, missing = tmp_path / "worker.log", tmp_path / "failure.json"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "ModuleNotFoundError: No module named 'trl'\n{'loss': 2.3, 'grad_norm': 1.0}\n"
                   "FutureWarning: something is deprecated\n")
    assert exit_reason(1, log, missing) == "ModuleNotFoundError: No module named 'trl' (exit code 1)"
    assert exit_reason(-9, log, missing) == "killed by SIGKILL"
    log.write_text("{'loss': 2.3}\n")
    assert exit_reason(1, log, missing) == "exit code 1 (see worker.log)"
    missing.write_text(json.dumps({"type": "SafetensorError", "message": "invalid header\nmore", "step": 3}))
    assert exit_reason(1, log, missing) == "SafetensorError: invalid header"
