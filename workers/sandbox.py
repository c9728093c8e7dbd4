"""Run model-written code in a sandbox: separate process, time/memory/process/output limits, no network.

Layers, strongest first (each used where the machine allows it):
- as root: new network and pid namespaces (`unshare --net --pid`), the program runs as `nobody`
  (cannot write the project or home), every process it forks dies with it;
- always: rlimits (address space, CPU seconds, processes, file size = output cap, no core dumps),
  a wall-clock limit that kills the whole process group, a fresh temporary directory removed after;
- always: an audit hook in the sandboxed interpreter refusing writes outside its temporary directory,
  sockets and ctypes (so code that is not root-isolated still has no network and no easy escape).
Without root and without user namespaces there is no network namespace: the audit hook is then the
only network barrier (documented in README).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
GUARD = r'''
import os, sys
root = os.path.realpath(os.getcwd())
def inside(path):
    try:
        return os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)
    except Exception:
        return False
def hook(event, args):
    if event == "open" and args[1] and any(c in str(args[1]) for c in "wax+") and not inside(args[0]):
        raise PermissionError(f"sandbox: writing outside {root} is not allowed")
    if event.startswith(("socket.", "ctypes.")) or event in ("os.chdir", "os.chroot"):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree") and not inside(args[0]):
        raise PermissionError(f"sandbox: {event} outside {root} is not allowed")
sys.addaudithook(hook)
sys.argv = sys.argv[1:]
code = open(sys.argv[0]).read()
exec(compile(code, sys.argv[0], "exec"), {"__name__": "__main__"})
'''


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use."""

    wall_s: float = 5.0
    memory_mb: int = 512
    processes: int = 32
    output_bytes: int = 64_000


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended and what it printed (capped)."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_untrusted(code: str, limits: SandboxLimits = SandboxLimits(), stdin: str = "") -> SandboxResult:
    """Run Python `code` in a sandbox and return its outcome; never raises for what the code does."""
    work = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-out-"))
    try:
        (work / "guard.py").write_text(GUARD)
        (work / "main.py").write_text(code)
        if _isolated():
            os.chown(work, NOBODY, NOBODY)
        return _execute(work, logs, limits, stdin)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _execute(work: Path, logs: Path, limits: SandboxLimits, stdin: str) -> SandboxResult:
    out_path, err_path = logs / "stdout", logs / "stderr"
    nproc = limits.processes if _isolated() else _own_process_count() + limits.processes
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(_command(), cwd=work, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                start_new_session=True, close_fds=True, env=_clean_env(work),
                                preexec_fn=lambda: _apply_limits(limits, nproc))
        timed_out = False
        try:
            proc.communicate(stdin.encode(), timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except (BrokenPipeError, OSError):
            proc.wait(limits.wall_s)
    return SandboxResult(None if timed_out else proc.returncode, _read_capped(out_path, limits.output_bytes),
                         _read_capped(err_path, limits.output_bytes), timed_out)


def _command() -> list[str]:
    guard_and_main = ["-I", "-S", "-B", "guard.py", "main.py"]
    if _isolated():
        return ["unshare", "--net", "--pid", "--fork", "--kill-child=SIGKILL", "--",
                "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                _interpreter_for_nobody(), *guard_and_main]
    return [sys.executable, *guard_and_main]


@lru_cache(maxsize=1)
def _isolated() -> bool:
    """True when namespaces and a uid switch are available (root with unshare and setpriv)."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "true"], capture_output=True)
    return probe.returncode == 0


def _interpreter_for_nobody() -> str:
    """A Python that `nobody` may execute (a venv under /root is not one)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if candidate and _world_executable(Path(candidate)):
            return candidate
    return sys.executable


def _world_executable(path: Path) -> bool:
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    return all(p.stat().st_mode & 0o001 for p in [real, *real.parents])


def _own_process_count() -> int:
    """Processes of this uid: RLIMIT_NPROC counts them all, so an unisolated sandbox adds to it."""
    import psutil
    uid = os.getuid()
    return sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid)


def _apply_limits(limits: SandboxLimits, nproc: int) -> None:
    """Runs in the child before exec: the rlimits every process of the sandbox inherits."""
    mem = limits.memory_mb * 1024 * 1024
    cpu = int(limits.wall_s) + 1
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _clean_env(work: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read_capped(path: Path, cap: int) -> str:
    with open(path, "rb") as f:
        return f.read(cap).decode("utf-8", errors="replace")
