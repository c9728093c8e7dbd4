"""Shared fixtures: a run directory with a real store, and spec files for workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest

from core.config import StageSpec
from core.forked_worker import ForkServer, fork_server_enabled
from core.kinds import KINDS
from core.store import RunStore
from core.worker_proc import dump_stacks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = {"steps": 4, "batch_size": 8, "lr": 1e-3, "logging_steps": 1, "max_length": 48}


class WorkerRun:
    """A run dir + store; `spec(...)` writes a stage's spec.json, `run(...)` starts the worker."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        RunStore.create(root / "run.db", {"id": root.name, "name": "test"}, []).close()

    def spec(self, name: str, kind: str, input_model: str | None = None, resume_from: str | None = None,
             overrides: dict | None = None, attempt: int = 1, model: dict | None = None, **stage) -> Path:
        stage.setdefault("train", {})
        stage["train"] = {**TINY_TRAIN, **stage["train"]}
        dump = StageSpec.model_validate({"name": name, "kind": kind, **stage}).model_dump(mode="json", by_alias=True)
        out = self.root / "stages" / name
        out.mkdir(parents=True, exist_ok=True)
        spec = {"run_dir": str(self.root), "db": str(self.root / "run.db"), "stage": dump,
                "model": {"base": "builtin:tiny-qwen3", "backend": "auto", "trust_remote_code": False, **(model or {})},
                "attempt": attempt, "input_model": input_model, "output_dir": str(out),
                "resume_from": resume_from, "train_overrides": overrides or {}}
        path = out / f"spec-{attempt}.json"
        path.write_text(json.dumps(spec))
        return path

    def run(self, kind: str, spec: Path, env: dict | None = None, nproc: int = 1, timeout: int = 300):
        """The worker (under torchrun for nproc > 1; else forked from the session's fork server, as a CPU
        machine's supervisor starts it) to its end; a worker still running after `timeout` fails the test with
        every worker thread's stack."""
        if nproc == 1 and (server := session_fork_server()) is not None:
            return self._forked(server, kind, spec, env, timeout)
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
            if nproc > 1 else [sys.executable]
        cmd = head + ["-m", KINDS[kind].worker, str(spec)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            import psutil

            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            dump_stacks(proc.pid)
            time.sleep(2)
            for each in tree:  # torchrun's ranks, which hold the pipes too
                try:
                    each.kill()
                except psutil.Error:
                    continue
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"the worker still ran after {timeout} s; its threads' stacks:\n{err[-8000:]}")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def _forked(self, server: ForkServer, kind: str, spec: Path, env: dict | None, timeout: int):
        """One worker forked from `server`; its log is the result's stdout and stderr."""
        log = self.root / f"{kind}-{time.monotonic_ns()}.log"
        with mock.patch.dict(os.environ, env or {}):  # the worker's environment is this one, as a cold start's
            proc = server.spawn(kind, spec, log)
        if proc is None:
            pytest.fail(f"the session's fork server is gone: {server.log.read_text()[-3000:]}")
        if (code := proc.wait(timeout)) is None:
            dump_stacks(proc.pid)
            time.sleep(2)
            proc.terminate()
            pytest.fail(f"the worker still ran after {timeout} s; its threads' stacks:\n{log.read_text()[-8000:]}")
        text = log.read_text()
        return subprocess.CompletedProcess(["fork", kind, str(spec)], code, text, text)

    def store(self) -> RunStore:
        return RunStore(self.root / "run.db")

    def final(self, name: str) -> Path:
        return self.root / "stages" / name / "final"


def run_batch(config: Path, expect: int = 0, timeout: int = 300) -> Path:
    """`cockpit run CONFIG --batch` into `<config's folder>/runs`; asserts the exit code, returns the run's folder."""
    runs = config.parent / "runs"
    done = subprocess.run([sys.executable, "-m", "cli.main", "run", str(config), "--batch", "--runs-dir", str(runs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == expect, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    return run


_FORK_SERVER: list = []  # the session's fork server, started on first use


def session_fork_server() -> ForkServer | None:
    """One fork server for the whole session (None on a GPU machine or with COCKPIT_FORKSERVER=0), so that
    tests running a worker by itself skip its ~5 s of imports as the supervisor's workers do."""
    if not _FORK_SERVER:
        from core.hardware import HardwareSampler

        root = Path(tempfile.mkdtemp(prefix="cockpit-forks-"))
        enabled = fork_server_enabled(HardwareSampler().has_gpu)
        _FORK_SERVER.append(ForkServer(root, root / "fork_server.log") if enabled else None)
    return _FORK_SERVER[0]


def pytest_sessionfinish(session, exitstatus):
    if _FORK_SERVER and _FORK_SERVER[0] is not None:
        _FORK_SERVER[0].close()


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need a CUDA device: skipped (not failed) on a machine without one."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def worker_run(tmp_path) -> WorkerRun:
    return WorkerRun(tmp_path / "run")


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path):
    """Kill any process a test left behind that works under its tmp_path (a failed test must not
    leave supervisors or trainers eating the CPU of the tests after it)."""
    yield
    import psutil

    marker = str(tmp_path)
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except psutil.Error:
            continue



class Listener:
    """A TCP listener on the host's 127.0.0.1 that sandbox probes must never reach."""

    def __init__(self, server):
        self.server, self.port = server, server.getsockname()[1]

    def reached(self) -> bool:
        """Whether anything connected (waits briefly)."""
        self.server.settimeout(0.3)
        try:
            self.server.accept()[0].close()
            return True
        except TimeoutError:
            return False


@pytest.fixture
def listener():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        yield Listener(server)
