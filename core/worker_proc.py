"""A stage worker as a subprocess: its own process group, output to a log file, never a pipe.

A worker starts cold (`python -m workers.stages.<kind> spec.json`, the module core.kinds names) or warm: `WarmWorker` prestarts
`python -m workers.warm <kind>` while the previous stage trains; it does the heavy imports on idle CPU
only (SCHED_IDLE as root, else nice +10), then blocks on its stdin (the handoff channel) until
`handoff` sends the spec and it becomes the stage's worker. `COCKPIT_PRESTART=0` turns prestarting
off (every worker starts cold).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.kinds import KINDS

STACKS_SIGNAL = signal.SIGUSR1  # a worker writes every thread's stack into its log on it (workers/common.py)

TERM_GRACE_S = 10.0
REASON_CHARS = 300
# The last line of a Python traceback ("OSError: [Errno 28] No space left on device") or a worker's own
# "[error] ..." line.
EXCEPTION_LINE = re.compile(r"^(\[error\] |[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(: |$))")


@dataclass
class WorkerProcess:
    """One running worker (or torchrun and its ranks), killed as a group."""

    popen: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start(cls, kind: str, spec: Path, log: Path, nproc: int = 1, threads: int | None = None,
              gpus: tuple[str, ...] | None = None) -> "WorkerProcess":
        """A cold start; `threads` goes to OMP_NUM_THREADS/MKL_NUM_THREADS of every process it runs, `gpus` (the
        ones it may use) to CUDA_VISIBLE_DEVICES."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(worker_command(kind, spec, nproc), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                     env=worker_env(threads, gpus))
        return cls(popen)

    def describe(self) -> str:
        return f"pid {self.pid}"

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


def dump_stacks(root_pid: int) -> int:
    """Have each worker process under `root_pid` (the worker, or torchrun's ranks; not torchrun itself) write
    every thread's stack into its log (STACKS_SIGNAL, workers/common.py); returns how many were asked."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        tree = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    asked = 0
    for proc in tree:
        try:
            if is_worker_command(proc.cmdline()):
                proc.send_signal(STACKS_SIGNAL)
                asked += 1
        except psutil.Error:
            continue
    return asked


def is_worker_command(cmdline: list[str]) -> bool:
    """`python [-u] -m workers.stages.<kind> …`, `-m workers.warm` (which runs one) or `-m workers.fork_server`
    (a worker forked from it keeps its command); not the torchrun agent, whose command names the worker module
    too, nor what a worker starts (sandboxed code)."""
    modules = [cmdline[i + 1] for i, part in enumerate(cmdline[:-1]) if part == "-m"]
    return bool(modules) and (modules[0] in ("workers.warm", "workers.fork_server")
                              or modules[0].startswith("workers.stages."))


@dataclass
class WarmWorker:
    """An interpreter prestarted for `stage`: imports done (or under way), waiting for its spec on stdin."""

    stage: str
    popen: subprocess.Popen

    @classmethod
    def start(cls, stage: str, kind: str, log: Path) -> "WarmWorker":
        """Start `python -m workers.warm <kind>`, in its own session, output to `log` until the handoff."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "workers.warm", kind], stdin=subprocess.PIPE, bufsize=0,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                     env=worker_env())
        return cls(stage, popen)

    def handoff(self, spec: Path, log: Path) -> WorkerProcess | None:
        """Send the spec and the stage log; the process becomes the stage's worker at this process's
        priority. None if it is gone (the caller starts the worker cold)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        if self.popen.poll() is None and self._send({"spec": str(spec), "log": str(log)}):
            self.popen.stdin.close()
            share_priority(self.popen.pid)
            return WorkerProcess(self.popen)
        self.terminate()
        return None

    def _send(self, message: dict) -> bool:
        try:
            self.popen.stdin.write(json.dumps(message).encode() + b"\n")
        except BrokenPipeError:
            return False
        return True

    def terminate(self) -> None:
        """Stop the interpreter if it still runs, and close the handoff channel."""
        if self.popen.poll() is None:
            WorkerProcess(self.popen).terminate()
        self.popen.stdin.close()


def share_priority(pid: int) -> None:
    """Give every thread of `pid` this process's scheduling policy and nice value (what a cold worker
    inherits); skipped where not permitted (lifting SCHED_IDLE or a nice value needs root)."""
    policy, param, nice = os.sched_getscheduler(0), os.sched_getparam(0), os.getpriority(os.PRIO_PROCESS, 0)
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setscheduler(tid, policy, param)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass


def prestart_enabled() -> bool:
    """Whether the next stage's interpreter is prestarted; `COCKPIT_PRESTART=0` turns it off."""
    return os.environ.get("COCKPIT_PRESTART", "1") != "0"


def pinned_threads(configured: int | None, world_size: int = 1) -> int:
    """Torch/OpenMP threads per worker process: the config's, else $OMP_NUM_THREADS, else this
    process's usable cores shared among the ranks."""
    if configured:
        return configured
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, len(os.sched_getaffinity(0)) // world_size)


def worker_env(threads: int | None = None, gpus: tuple[str, ...] | None = None) -> dict[str, str]:
    """The environment of supervisors and workers: offline hub, unbuffered output, repo importable,
    OMP/MKL thread counts when `threads` is given, the visible GPUs when `gpus` is."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def worker_command(kind: str, spec: Path, nproc: int) -> list[str]:
    """`python -m <the kind's worker module> spec`, under torchrun when the stage wants several processes."""
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", KINDS[kind].worker, str(spec)]
    return [sys.executable, "-m", KINDS[kind].worker, str(spec)]


def exit_reason(code: int, log: Path, failure: Path) -> str | None:
    """Why a worker failed, in one line: the exception it recorded in `failure` (type: message), else
    the exception line of a traceback in its log, else how it ended (signal or exit code)."""
    if code == 0:
        return None
    recorded = _recorded_failure(failure)
    if recorded:
        return recorded
    if code < 0:  # a signal leaves no exception behind
        return f"killed by {signal.Signals(-code).name}"
    last = next((line for line in reversed(tail_lines(log, 40)) if EXCEPTION_LINE.match(line)), None)
    return f"{last} (exit code {code})" if last else f"exit code {code} (see {log.name})"


def _recorded_failure(failure: Path) -> str | None:
    try:
        data = json.loads(failure.read_text())
        text = f"{data['type']}: {data['message']}" if data.get("message") else data["type"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return text.splitlines()[0][:REASON_CHARS] if text else None


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
    return [line.strip()[:REASON_CHARS] for line in text.splitlines() if line.strip()][-count:]
