"""Workers forked from the run's fork server (a CPU machine's way to start stages), real processes and signals."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.forked_worker import ForkServer, fork_server_enabled
from core.hardware import HardwareSampler
from test_prestart import CURRICULUM, clean_env, cockpit, events, gone, wait_for

pytestmark = pytest.mark.skipif(HardwareSampler().has_gpu, reason="a GPU machine prestarts interpreters instead")


@pytest.fixture
def fork_server(worker_run):
    server = ForkServer(worker_run.root, worker_run.root / "fork_server.log")
    yield server
    server.close()


def test_every_stage_is_forked_at_once_with_its_own_thread_count(tmp_path):
    cfg = tmp_path / "forked.yaml"
    cfg.write_text(CURRICULUM.format(steps=4))
    runs = tmp_path / "runs"
    done = cockpit("run", str(cfg), "--batch", runs=runs, env=clean_env(COCKPIT_FORKSERVER="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    names = ["pretrain", "sft", "sft2", "sft3"]
    started = {s: events(run, "stage_started", stage=s)[0].data for s in names}
    cores = len(os.sched_getaffinity(0))
    assert [started[s]["threads"] for s in names] == [cores, 1, cores, cores]
    assert started["sft"]["device"] == "cpu (1 threads)"
    assert all(started[s]["warm"] for s in names), "each worker runs in a fork with its imports done"
    assert not list(run.glob("stages/*/prestart.log")), "nothing is prestarted beside the fork server"
    for stage in names:
        logs = [e.data["message"] for e in events(run, "log", stage=stage)]
        assert any(m.startswith("worker started") and m.endswith("forked start)") for m in logs), logs
    for before, after in zip(names, names[1:]):  # a new interpreter would take ~5 s to import
        gap = events(run, "stage_started", stage=after)[0].ts - events(run, "stage_finished", stage=before)[0].ts
        assert gap < 2.0, f"{gap:.2f} s from {before} finished to {after} started"
    server_log = (run / "fork_server.log").read_text()
    assert "fork server for" in server_log and "ready (pid" in server_log
    server_pid = int(server_log.split("ready (pid ")[1].split(")")[0])
    assert gone(server_pid), "the fork server ends with its run"


def test_a_forked_worker_keeps_its_exit_code_and_its_own_session(worker_run, fork_server, tmp_path):
    log = worker_run.root / "stages" / "pretrain" / "worker.log"
    bad = fork_server.spawn("pretrain", tmp_path / "missing.json", log)
    assert bad.wait(180) == 2 and "cannot read spec" in log.read_text()
    spec = worker_run.spec("pretrain", "pretrain", data="builtin:arithmetic-text", train={"steps": 2000},
                           eval=False)
    proc = fork_server.spawn("pretrain", spec, spec.parent / "worker.log", threads=1)
    assert os.getsid(proc.pid) == proc.pid, "its own session, so killpg reaches it and its children"
    assert proc.wait(0.5) is None
    proc.terminate()
    assert proc.wait(5) == -signal.SIGTERM, "the code a Popen would give: killed by SIGTERM"


def test_workers_outlive_their_fork_server(worker_run, fork_server):
    spec = worker_run.spec("pretrain", "pretrain", data="builtin:arithmetic-text", train={"steps": 2000},
                           eval=False)
    proc = fork_server.spawn("pretrain", spec, spec.parent / "worker.log", threads=1)
    wait_for(lambda: events(worker_run.root, "stage_started", stage="pretrain"), 60, "the worker to start")
    assert Path(f"/proc/{proc.pid}/comm").read_text() == "cockpit:pretrai\n", "top names the stage (15 bytes)"
    fork_server.close()  # as when its supervisor dies: EOF on its stdin
    assert fork_server.popen.poll() is not None
    time.sleep(0.5)
    assert proc.wait(0.1) is None, "the worker trains on without its server"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == 1, "its code is lost with the server: a worker that vanished counts as failed"
    assert fork_server.spawn("pretrain", spec, spec.parent / "worker.log") is None


def test_only_a_cpu_machine_forks_and_the_switch_turns_it_off(monkeypatch):
    monkeypatch.delenv("COCKPIT_FORKSERVER", raising=False)
    assert fork_server_enabled(has_gpu=False) and not fork_server_enabled(has_gpu=True)
    monkeypatch.setenv("COCKPIT_FORKSERVER", "0")
    assert not fork_server_enabled(has_gpu=False)
