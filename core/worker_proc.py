"""A stage worker as a subprocess: its own process group, output to a log file, never a pipe."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE_S = 10.0


@dataclass
class WorkerProcess:
    """One running worker (or torchrun and its ranks), killed as a group."""

    popen: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start(cls, kind: str, spec: Path, log: Path, nproc: int = 1) -> "WorkerProcess":
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(worker_command(kind, spec, nproc), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                     env=worker_env())
        return cls(popen)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        """SIGTERM the whole group, SIGKILL it if it is still there after a grace period."""
        self._signal(signal.SIGTERM)
        if self.wait(TERM_GRACE_S) is None:
            self._signal(signal.SIGKILL)
            self.popen.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    @staticmethod
    def terminate_group(pgid: int) -> None:
        """SIGTERM a process group we did not start (no Popen), SIGKILL it after the grace period."""
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        while WorkerProcess.group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if WorkerProcess.group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def worker_env() -> dict[str, str]:
    """The environment of supervisors and workers: offline hub, unbuffered output, repo importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def worker_command(kind: str, spec: Path, nproc: int) -> list[str]:
    """`python -m workers.<kind> spec`, under torchrun when the stage wants several processes."""
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", f"workers.{kind}", str(spec)]
    return [sys.executable, "-m", f"workers.{kind}", str(spec)]


def exit_reason(code: int, log: Path, lines: int = 5) -> str | None:
    """A one-paragraph reason for a failed worker: signal or exit code, then its last log lines."""
    if code == 0:
        return None
    what = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    tail = tail_lines(log, lines)
    return what + (": " + " | ".join(tail) if tail else "")


def tail_lines(path: Path, count: int, max_bytes: int = 64_000) -> list[str]:
    """The last `count` non-empty lines of a (possibly huge) log file, read from the end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.strip()[:300] for line in text.splitlines() if line.strip()][-count:]
