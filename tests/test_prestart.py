"""Prestarted (warm) worker interpreters and pinned thread counts, with real subprocesses and signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.hardware import HardwareSampler
from core.store import RunStore
from core.worker_proc import WarmWorker, pinned_threads, worker_env

ROOT = Path(__file__).resolve().parents[1]
CURRICULUM = """
name: warm
defaults:
  lora: {{r: 4, alpha: 8}}
  train: {{steps: 2, batch_size: 8, logging_steps: 1, max_length: 32, precision: fp32}}
stages:
  - {{name: pretrain, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false,
     train: {{steps: {steps}}}}}
  - {{name: sft, kind: sft, data: "builtin:arithmetic-chat", eval: false, train: {{threads: 1}}}}
  - {{name: sft2, kind: sft, data: "builtin:arithmetic-chat",
     eval: {{data: "builtin:arithmetic-eval", metrics: [perplexity], max_samples: 500}}}}
  - {{name: sft3, kind: sft, data: "builtin:arithmetic-chat", eval: false}}
"""


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def ready(log: Path) -> bool:
    return log.exists() and "interpreter ready" in log.read_text()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def scheduling(pid: int) -> set[tuple[int, int]]:
    """(policy, nice) of every thread of `pid` (threads that end meanwhile are left out)."""
    found = set()
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            found.add((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError:
            continue
    return found


def warm_pid(prestart_log: Path) -> int:
    """The pid a warm interpreter wrote in its `interpreter ready after X s (pid N)` line."""
    line = next(l for l in prestart_log.read_text().splitlines() if "interpreter ready" in l)
    return int(line.rsplit("pid ", 1)[1].rstrip(")"))


def events(run: Path, kind: str, **kw):
    with RunStore(run / "run.db") as store:
        return store.events(kinds=[kind], **kw)


def cockpit(*args, runs: Path, env: dict, wait: bool = True):
    cmd = [sys.executable, "-m", "cli.main", *args, "--runs-dir", str(runs)]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def clean_env(**extra) -> dict:
    """This environment without a user thread setting, so the default thread count is the core count, and
    without the fork server (which a CPU machine uses instead of prestarting: tests/test_fork_server.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, "COCKPIT_FORKSERVER": "0", **extra}


@pytest.fixture
def warm_worker(worker_run):
    """A warm pretrain interpreter for `worker_run` that is always stopped afterwards."""
    started = []

    def start() -> WarmWorker:
        log = worker_run.root / "stages" / "pretrain" / "prestart.log"
        started.append(WarmWorker.start("pretrain", "pretrain", log))
        return started[-1]

    yield start
    for warm in started:
        if warm.popen.poll() is None:
            warm.terminate()


def test_warm_interpreter_runs_a_handed_spec_like_a_cold_worker(worker_run, warm_worker):
    spec = worker_run.spec("pretrain", "pretrain", data="builtin:arithmetic-text", train={"steps": 2}, eval=False)
    log, prestart = spec.parent / "worker.log", spec.parent / "prestart.log"
    warm = warm_worker()
    wait_for(lambda: ready(prestart), 90, "the warm interpreter to finish importing")
    assert os.getsid(warm.popen.pid) == warm.popen.pid, "its own session, so killpg reaches it and its children"
    assert scheduling(warm.popen.pid) != scheduling(os.getpid())
    proc = warm.handoff(spec, log)
    if os.geteuid() == 0:  # only root may lift SCHED_IDLE or a nice value again
        assert scheduling(proc.pid) == scheduling(os.getpid())
    assert proc.wait(120) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "warm start: imports took" in text and "final model saved" in text
    assert "final model saved" not in prestart.read_text() and "RuntimeWarning" not in text
    (started,) = events(worker_run.root, "stage_started", stage="pretrain")
    assert started.data["warm"] is True and started.data["pid"] == proc.pid
    assert [e.step for e in events(worker_run.root, "metric", stage="pretrain") if e.name == "loss"] == [1, 2]


def test_warm_interpreter_keeps_the_exit_code_of_a_bad_spec(worker_run, warm_worker, tmp_path):
    log = worker_run.root / "stages" / "pretrain" / "worker.log"
    proc = warm_worker().handoff(tmp_path / "missing.json", log)
    assert proc.wait(120) == 2
    assert "cannot read spec" in log.read_text()


def test_dead_warm_interpreter_means_a_cold_start(worker_run, warm_worker):
    warm = warm_worker()
    os.killpg(warm.popen.pid, signal.SIGKILL)
    warm.popen.wait(10)
    assert warm.handoff(worker_run.root / "spec.json", worker_run.root / "worker.log") is None


def test_waiting_warm_interpreter_exits_when_its_supervisor_dies(tmp_path):
    prestart = tmp_path / "prestart.log"
    holder = subprocess.Popen(  # a stand-in supervisor: holds the handoff channel, then is SIGKILLed
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from core.worker_proc import WarmWorker;"
         "WarmWorker.start('sft', 'sft', Path(sys.argv[1])); time.sleep(600)", str(prestart)],
        cwd=ROOT, env=worker_env())
    try:
        wait_for(lambda: ready(prestart), 90, "the warm interpreter to finish importing")
        pid = warm_pid(prestart)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        wait_for(lambda: gone(pid), 5, "the orphaned warm interpreter to exit")
        assert "handoff channel closed" in prestart.read_text()
    finally:
        holder.kill()


def test_stages_start_warm_where_the_cpu_allows_with_their_own_thread_counts(tmp_path):
    cfg = tmp_path / "warm.yaml"
    cfg.write_text(CURRICULUM.format(steps=4))
    runs = tmp_path / "runs"
    done = cockpit("run", str(cfg), "--batch", runs=runs, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    names = ["pretrain", "sft", "sft2", "sft3"]
    started = {s: events(run, "stage_started", stage=s)[0].data for s in names}
    cores, gpu = len(os.sched_getaffinity(0)), HardwareSampler().has_gpu
    assert [started[s]["threads"] for s in names] == [cores, 1, cores, cores]
    assert started["sft"]["device"] == "cpu (1 threads)" or gpu
    # warm where an earlier worker left CPU idle: pretrain started cold (it imported too: sft and sft2 were
    # prestarted then, two ahead), sft trains on one thread (sft3 prestarted meanwhile)
    expected = [False, True, True, True]
    assert [started[s]["warm"] for s in names] == expected
    assert sorted(p.parent.name for p in run.glob("stages/*/prestart.log")) == [s for s, w in zip(names, expected) if w]
    logs = [e.data["message"] for e in events(run, "log", stage="sft")]
    assert any(m.startswith("worker started") and m.endswith("warm start)") for m in logs), logs
    assert "warm start: imports took" in (run / "stages" / "sft" / "worker.log").read_text()
    finished = events(run, "stage_finished", stage="pretrain")[0].ts
    gap = events(run, "stage_started", stage="sft")[0].ts - finished
    assert gap < 3.0, f"{gap:.2f} s from pretrain finished to sft started"
    assert gone(warm_pid(run / "stages" / "sft" / "prestart.log"))


def test_stopping_the_run_terminates_the_waiting_warm_interpreter(tmp_path):
    cfg = tmp_path / "warm.yaml"
    cfg.write_text(CURRICULUM.format(steps=500))
    runs = tmp_path / "runs"
    proc = cockpit("run", str(cfg), "--batch", runs=runs, env=clean_env(), wait=False)
    try:
        pids = []
        for stage in ("sft", "sft2"):  # two stages ahead wait prestarted
            prestart = wait_for(lambda: next(runs.glob(f"*/stages/{stage}/prestart.log"), None), 60,
                                f"a prestarted {stage}")
            wait_for(lambda: ready(prestart), 90, "the warm interpreter to finish importing")
            pids.append(warm_pid(prestart))
        assert not any(map(gone, pids))
        assert cockpit("stop", "latest", runs=runs, env=clean_env()).returncode == 0
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        assert all(map(gone, pids)), "a stopped run leaves no warm interpreter behind"
    finally:
        proc.kill()


def test_thread_count_comes_from_config_then_environment_then_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert pinned_threads(3) == 3
    assert pinned_threads(None) == cores
    assert pinned_threads(None, world_size=2) == max(1, cores // 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert pinned_threads(None) == 1 and pinned_threads(4) == 4
    assert worker_env(3)["OMP_NUM_THREADS"] == worker_env(3)["MKL_NUM_THREADS"] == "3"
