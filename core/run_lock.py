"""One supervisor per run: an OS lock (flock) on `<run>/supervisor.lock`, held for the supervisor's lifetime.

The kernel releases it when the holder dies, however it dies, so a stale lock cannot exist. A
detached supervisor inherits the lock its launcher took (the open file description is shared), so
there is no moment between "checked" and "started" when a second launcher could slip in.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.errors import UserError

LOCK_NAME = "supervisor.lock"


class RunBusy(UserError):
    """Another process supervises this run."""


class RunLock:
    """The held lock; `fd` is what a child must inherit to keep holding it."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Take the run's lock now or raise RunBusy naming the holder (never waits)."""
        path = Path(run_dir) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunBusy(f"run {Path(run_dir).name} is already supervised (pid {holder}); "
                          "`cockpit attach` it, or `cockpit stop` it first") from None
        lock = cls(fd, path)
        lock.set_holder(os.getpid())
        return lock

    @classmethod
    def inherited(cls, fd: int, run_dir: Path) -> "RunLock":
        """The lock a launcher took and passed down as file descriptor `fd`."""
        lock = cls(fd, Path(run_dir) / LOCK_NAME)
        lock.set_holder(os.getpid())
        return lock

    def set_holder(self, pid: int) -> None:
        """Record who holds the lock (what a refused second launcher reports)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(pid).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
