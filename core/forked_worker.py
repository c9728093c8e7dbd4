"""Workers forked from the run's fork server (workers/fork_server.py) instead of started as new interpreters.

The supervisor of a CPU machine starts one `ForkServer` for the run; each local single-process stage is then
a `ForkedWorker`: the same worker module in its own session, logging to the same file, but without the ~5 s
of imports a new interpreter spends (and takes from the stage training beside it). It quacks like a
WorkerProcess (pid, describe, wait, terminate); its exit code comes from the server, its parent.
`COCKPIT_FORKSERVER=0` turns it off (every worker is its own interpreter, prestarted as before).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.worker_proc import TERM_GRACE_S, WorkerProcess, worker_env

READY_TIMEOUT_S = 180.0  # the server's imports, on a loaded machine


def fork_server_enabled(has_gpu: bool) -> bool:
    """CPU machines only (a library touching CUDA at import would leave forked children without the GPU);
    `COCKPIT_FORKSERVER=0` turns it off."""
    return not has_gpu and os.environ.get("COCKPIT_FORKSERVER", "1") != "0"


class ForkServer:
    """The run's fork server, started by the first `spawn`; `close` when the run ends (running workers go on)."""

    def __init__(self, run_dir: Path, log: Path):
        self.run_dir, self.log = run_dir, log
        self.popen: subprocess.Popen | None = None
        self._pids: queue.Queue[int | None] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._ended = threading.Condition()
        self._gone = False
        self._asking = threading.Lock()

    def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen([sys.executable, "-m", "workers.fork_server", str(self.run_dir)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out,
                                          start_new_session=True, close_fds=True, env=worker_env())
        threading.Thread(target=self._read, name="fork-server", daemon=True).start()

    def _read(self) -> None:
        """Sort the server's answers: new pids to `spawn`, exit codes to `wait_exit`."""
        for line in self.popen.stdout:
            message = json.loads(line)
            if "pid" in message:
                self._pids.put(message["pid"])
            else:
                with self._ended:
                    self._exits[message["exit"]] = message["code"]
                    self._ended.notify_all()
        with self._ended:
            self._gone = True
            self._ended.notify_all()
        self._pids.put(None)

    def spawn(self, kind: str, spec: Path, log: Path, threads: int | None = None,
              gpus: tuple[str, ...] | None = None) -> "ForkedWorker | None":
        """A worker for `spec`, forked; None if the server is gone (the caller starts a new interpreter)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        request = {"kind": kind, "spec": str(spec), "log": str(log), "env": worker_env(threads, gpus)}
        with self._asking:
            if self.popen is None:
                self._start()
            try:
                self.popen.stdin.write(json.dumps(request).encode() + b"\n")
                self.popen.stdin.flush()
                pid = None if self._gone else self._pids.get(timeout=READY_TIMEOUT_S)
            except (OSError, ValueError, queue.Empty):  # a broken pipe; stdin closed by `close`
                pid = None
        return ForkedWorker(pid, self) if pid else None

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code, or None while it runs. A server gone before the child: the code is lost,
        so a child whose group is gone too counts as failed (1)."""
        with self._ended:
            self._ended.wait_for(lambda: pid in self._exits or self._gone, timeout)
            if pid in self._exits:
                return self._exits[pid]
            if not self._gone:
                return None
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while WorkerProcess.group_alive(pid):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
        return 1

    def close(self) -> None:
        """End the server (EOF on its stdin); the workers it forked keep running."""
        if self.popen is None:
            return
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class ForkedWorker:
    """One worker forked by the server: its own session (pgid = pid), killed as a group."""

    pid: int
    server: ForkServer

    def describe(self) -> str:
        return f"pid {self.pid}"

    def wait(self, timeout: float) -> int | None:
        return self.server.wait_exit(self.pid, timeout)

    def terminate(self) -> None:
        """SIGTERM the group, SIGKILL it if it is still there after a grace period."""
        self._signal(signal.SIGTERM)
        if self.wait(TERM_GRACE_S) is None:
            self._signal(signal.SIGKILL)
            self.wait(None)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
