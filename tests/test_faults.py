"""Nothing lost: real signals, real floods, real broken files. Run alone with `pytest -m faults`."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.checkpoints import last_complete_checkpoint
from core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.faults

ONE_STAGE = """
name: fault
stall_timeout_s: {stall}
stages:
  - name: pretrain
    kind: pretrain
    data: "builtin:arithmetic-text"
    train: {{steps: {steps}, batch_size: 8, lr: 1.0e-3, logging_steps: 1, save_steps: {save}, max_length: 32}}
    eval: false
"""


def config(tmp_path: Path, steps=60, save=10, stall=600, extra: str = "") -> Path:
    path = tmp_path / "fault.yaml"
    path.write_text(ONE_STAGE.format(steps=steps, save=save, stall=stall) + extra)
    return path


def cockpit(*args, runs: Path, env: dict | None = None, wait=True, **popen):
    cmd = [sys.executable, "-m", "cli.main", *args, "--runs-dir", str(runs)]
    full_env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, **popen)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def the_run(runs: Path) -> Path | None:
    """The one run in `runs` once it is fully created, else None."""
    found = [p for p in runs.iterdir() if (p / "run.db").exists() and not p.name.startswith(".")]
    return found[0] if found else None


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def events(run: Path, kind: str, **kw):
    with RunStore(run / "run.db") as store:
        return store.events(kinds=[kind], **kw)


def worker_pid(run: Path) -> int | None:
    started = events(run, "stage_started") if (run / "run.db").exists() else []
    return started[-1].data["pid"] if started else None


def loss_steps(run: Path, stage="pretrain") -> list[int]:
    return [e.step for e in events(run, "metric", stage=stage) if e.name == "loss"]


def assert_each_step_once(run: Path, steps: int):
    seen = loss_steps(run)
    assert sorted(seen) == list(range(1, steps + 1)), seen


def test_killed_worker_fails_with_reason_then_resumes_from_last_complete_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    # the worker stops at step 25 (so a loaded machine cannot let it finish before the kill); resume does not
    proc = cockpit("run", str(config(tmp_path, steps=60)), "--batch", runs=runs, wait=False,
                   env={"COCKPIT_FAULT_SLEEP_AT_STEP": "25"})
    run = wait_for(lambda: runs.exists() and the_run(runs), what="run dir")
    wait_for(lambda: max(loss_steps(run), default=0) >= 24, what="steps past the checkpoint at 20")
    os.kill(worker_pid(run), signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    show = json.loads(cockpit("show", "latest", "--json", runs=runs).stdout)
    assert show["stages"][0]["status"] == "failed"
    assert "SIGKILL" in show["stages"][0]["reason"]
    checkpoints = run / "stages" / "pretrain" / "checkpoints"
    # the kill may land after a checkpoint's rename but before its step's loss reached the store
    killed_at = max(loss_steps(run) + [int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*")])
    # a half-written checkpoint past the last complete one must never be chosen
    partial = checkpoints / f"checkpoint-{killed_at + 1}"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    expected = last_complete_checkpoint(partial.parent)
    assert expected.name != partial.name
    resumed = cockpit("resume", "latest", "--batch", runs=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (resume_event,) = events(run, "resumed")
    assert resume_event.data["from_checkpoint"] == str(expected)
    assert resume_event.step == int(expected.name.split("-")[1]) < killed_at + 1
    assert_each_step_once(run, 60)
    assert (run / "stages" / "pretrain" / "final" / "model.safetensors").is_file()


def test_hangup_of_the_terminal_session_kills_neither_supervisor_nor_worker(tmp_path):
    runs = tmp_path / "runs"
    terminal = cockpit("run", str(config(tmp_path, steps=150, save=50)), "--batch", runs=runs, wait=False,
                       start_new_session=True)
    run = wait_for(lambda: runs.exists() and the_run(runs), what="run dir")
    wait_for(lambda: (run / "run.db").exists() and loss_steps(run), what="training")
    os.killpg(terminal.pid, signal.SIGHUP)  # what closing the terminal does to its session
    out, _ = terminal.communicate(timeout=120)
    assert terminal.returncode == 0, out
    assert_each_step_once(run, 150)


def test_out_of_memory_is_retried_with_half_batch_and_double_accumulation(tmp_path):
    runs = tmp_path / "runs"
    env = {"COCKPIT_FAULT_OOM_AT_STEP": "3", "COCKPIT_FAULT_OOM_MAX_BATCH": "2"}
    done = cockpit("run", str(config(tmp_path, steps=6, save=0)), "--batch", runs=runs, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    retries = events(the_run(runs), "oom_retry")
    assert [(e.data["batch_size"], e.data["grad_accum"]) for e in retries] == [(4, 2), (2, 4)]
    assert "out of memory, retrying with batch 4 x 2" in done.stdout
    assert_each_step_once(the_run(runs), 6)


def test_flooding_worker_never_blocks(tmp_path):
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    done = cockpit("run", str(config(tmp_path, steps=10, save=0)), "--batch", runs=runs,
                   env={"COCKPIT_FAULT_FLOOD": "2"})
    assert done.returncode == 0, done.stdout[-2000:]
    log = the_run(runs) / "stages" / "pretrain" / "worker.log"
    assert log.stat().st_size > 10 * 4 * 1024 * 1024 * 0.9  # 2 MB to stdout and stderr at each of 10 steps
    assert time.monotonic() - t0 < 120


def test_hung_worker_is_reported_stalled_and_can_be_stopped(tmp_path):
    runs = tmp_path / "runs"
    proc = cockpit("run", str(config(tmp_path, steps=50, save=0, stall=3)), "--batch", runs=runs, wait=False,
                   env={"COCKPIT_FAULT_SLEEP_AT_STEP": "2"})
    run = wait_for(lambda: runs.exists() and the_run(runs), what="run dir")
    wait_for(lambda: (run / "run.db").exists() and events(run, "stalled"), timeout=90, what="stalled event")
    log = run / "stages" / "pretrain" / "worker.log"
    wait_for(lambda: "in inject_faults" in log.read_text(), timeout=10, what="the hung worker's stack in its log")
    assert cockpit("stop", "latest", runs=runs).returncode == 0
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stalled, no new step" in out and "the stack of every worker thread is in" in out
    show = json.loads(cockpit("show", "latest", "--json", runs=runs).stdout)
    assert show["status"] == "stopped" and show["stages"][0]["status"] == "stopped"


def test_only_worker_processes_are_asked_for_their_stacks():
    """SIGUSR1's default action ends a process: torchrun's agent (whose command names the worker module too) and
    what a worker starts (sandboxed code) must never get it."""
    from core.worker_proc import is_worker_command
    py = sys.executable
    assert is_worker_command([py, "-m", "workers.stages.sft", "spec.json"])
    assert is_worker_command([py, "-u", "-m", "workers.stages.sft", "spec.json"])  # a torchrun rank
    assert is_worker_command([py, "-m", "workers.warm", "sft"])
    assert is_worker_command([py, "-m", "workers.fork_server", "runs/r1"])  # a forked worker
    assert not is_worker_command([py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                                  "workers.stages.sft", "spec.json"])
    assert not is_worker_command([py, "-c", "print(1)"]) and not is_worker_command(["./prog"])


def test_disk_full_while_saving_keeps_the_previous_checkpoint_usable(tmp_path):
    runs = tmp_path / "runs"
    done = cockpit("run", str(config(tmp_path, steps=20, save=5)), "--batch", runs=runs,
                   env={"COCKPIT_FAULT_DISK_FULL_AT_STEP": "10"})
    assert done.returncode == 1
    run = the_run(runs)
    reason = json.loads(cockpit("show", "latest", "--json", runs=runs).stdout)["stages"][0]["reason"]
    assert re.match(r"^\w+Error: .*File too large", reason), reason  # the exception, not the log's last lines
    last = last_complete_checkpoint(run / "stages" / "pretrain" / "checkpoints")
    assert last is not None and last.name == "checkpoint-5"
    resumed = cockpit("resume", "latest", "--batch", runs=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert events(run, "resumed")[-1].data["from_checkpoint"] == str(last)
    assert_each_step_once(run, 20)


def test_pickle_only_model_folder_is_refused_before_anything_is_created(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("name: fault\n", f"name: fault\nmodel: {{base: {model}}}\n"))
    runs = tmp_path / "runs"
    done = cockpit("run", str(cfg), "--batch", runs=runs)
    assert done.returncode == 2, done.stderr
    assert "pickle" in done.stderr and "model.base" in done.stderr
    assert not runs.exists() or not any(runs.iterdir())
