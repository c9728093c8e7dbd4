"""Run model-written code in a sandbox: separate process, time/memory/process/output limits, no network.

The barrier is decided once per process (`barrier()`, `describe_barrier()`), strongest first:
- "root" (running as root): new network, pid and mount namespaces (`unshare`); the program runs as
  `nobody` with no new privileges; every process it forks dies with it;
- "userns" (not root, unprivileged user namespaces allowed): the same namespaces inside a new user
  namespace (`unshare --user --map-root-user`), every capability dropped, no new privileges;
- "weak" (neither): only the audit hook and the limits below. The network is then open to code that
  slips past the hook, so `run_untrusted` refuses with `SandboxUnavailable` unless the caller opts in
  with `allow_weak=True` (config `sandbox: weak`).
In "root" and "userns", where the kernel has `mount_setattr` (Linux 5.12+), the mount namespace shows the
whole filesystem read-only except the work directory, and a private /proc hides the host's processes;
where it has not, writes outside the work directory are refused by the audit hook only.
Always: rlimits (address space, CPU seconds, processes, file size = output cap, no core dumps), a
wall-clock limit that kills the whole process group, a fresh temporary directory removed after, and an
audit hook in the sandboxed interpreter. The hook refuses sockets, ctypes, creating or signalling
processes, tracing, symlinks, writes outside the work directory (by open mode or os.open flags; paths
with '..' or given as path objects count as outside), opening directories outside it, and rename, link,
chmod, chown, truncate, utime, xattr and shutil writes that touch anything outside it. The hook is
defence in depth, not a boundary: CPython's audit hooks cannot stop all in-process tricks, and calls
that raise no audit event (os.mkfifo, os.mknod) pass it; the namespaces are the barrier.

Other programs (`run_untrusted_command`: compilers, compiled binaries, node) run in steps in one work dir,
with the same namespaces, mounts, uid and rlimits but no audit hook, so they never run at "weak", not even
with `sandbox: weak`. Their steps may cap memory with RLIMIT_DATA instead of RLIMIT_AS (node's V8 and the Go
runtime reserve gigabytes of address space; see SandboxLimits). Compilers run as the sandbox user like the
programs they build. A toolchain that user cannot reach (rustup's under /root, mode 0700, when it is nobody)
is bind-mounted read-only inside the mount namespace at a fixed path ($TMPDIR/cockpit-sandbox-tools-UID/
NAME, fixed so that build caches keyed by it stay valid). The alternatives were worse: compiling as root, or
as a user namespace's root (still the owner of root's files), would let `include_str!("/root/...")` read
root-only files into the program, and copying a toolchain per run costs seconds. Where mount_setattr is
missing (no bind, no read-only view) such a toolchain is refused with a message naming its path.
"""
from __future__ import annotations

import dataclasses
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from core.errors import SpecError
from workers.sandbox_scripts import GUARD, JAIL

NOBODY = 65534
SANDBOX_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
UNAVAILABLE = (
    "no sandbox barrier for model-written code on this machine: not root, and unprivileged user "
    "namespaces are unavailable (`unshare --user --map-root-user --net --pid` fails, or unshare/setpriv "
    "from util-linux is missing), so the code would run with the network open. Run as root, allow user "
    "namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, or "
    "kernel.apparmor_restrict_unprivileged_userns=0), or accept the audit-hook-only barrier explicitly "
    "with `sandbox: weak` in the config (run_untrusted(..., allow_weak=True)).")


COMMANDS_NEED_NAMESPACES = (
    "no sandbox barrier for non-Python programs on this machine: not root, and unprivileged user namespaces "
    "are unavailable (`unshare --user --map-root-user --net --pid` fails, or unshare/setpriv from util-linux "
    "is missing). Compiled or node programs have no audit hook to fall back on, so they never run at the "
    "weak barrier. Run as root or allow user namespaces (sysctl user.max_user_namespaces > 0, "
    "kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0)")
IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]+$")


class SandboxUnavailable(SpecError):
    """Only the weak barrier (audit hook + rlimits) is available and the caller did not opt in to it."""


class Plan(NamedTuple):
    """How runs are isolated: a barrier level and whether the filesystem is read-only but the work dir."""

    level: str
    mounts: bool


WEAK = Plan("weak", False)


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use.

    `memory_rlimit` "as" caps the address space (RLIMIT_AS); "data" caps private writable memory
    (RLIMIT_DATA: heap and private anonymous maps) and leaves the address space unlimited, for programs that
    reserve far more address space than they use (node's V8 reserves gigabytes; compilers' per-thread malloc
    arenas). RLIMIT_DATA does not count shared mappings, so "data" is the looser cap. `file_bytes` caps each
    file written (RLIMIT_FSIZE; default `output_bytes`): compile steps write binaries and caches."""

    wall_s: float = 5.0
    memory_mb: int = 512
    processes: int = 32
    output_bytes: int = 64_000
    memory_rlimit: str = "as"
    file_bytes: int | None = None

    def __post_init__(self):
        if self.memory_rlimit not in ("as", "data"):
            raise ValueError(f"memory_rlimit {self.memory_rlimit!r}: use 'as' or 'data'")


COMMAND_LIMITS = SandboxLimits(wall_s=20.0, memory_mb=1024, processes=64, output_bytes=64_000,
                               memory_rlimit="data", file_bytes=64 * 1024 * 1024)  # a compiler's step


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended and what it printed (capped)."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    step: str = ""  # run_untrusted_command: the step this result is from (the first that failed, else the last)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_untrusted(code: str, limits: SandboxLimits = SandboxLimits(), stdin: str = "",
                  allow_weak: bool = False) -> SandboxResult:
    """Run Python `code` in a sandbox and return its outcome; never raises for what the code does.

    Raises SandboxUnavailable when only the "weak" barrier exists here and `allow_weak` is False.
    """
    plan = _plan()
    if plan.level == "weak" and not allow_weak:
        raise SandboxUnavailable(UNAVAILABLE)
    return _run(code, limits, stdin, plan)


@dataclass(frozen=True)
class Step:
    """One command of `run_untrusted_command`: its argv and limits. In argv (and in the run's env values)
    "{work}" stands for the work directory's absolute path and "{tool:NAME}" for where tool NAME is seen."""

    argv: tuple[str, ...]
    limits: SandboxLimits = COMMAND_LIMITS
    name: str = ""


def run_untrusted_command(files: Mapping[str, str], steps: Sequence[Step | Sequence[str]],
                          limits: SandboxLimits = COMMAND_LIMITS, *, tools: Mapping[str, str | Path] = {},
                          trees: Mapping[str, str | Path] = {}, env: Mapping[str, str] = {},
                          collect: Mapping[str, str | Path] = {}, allow_weak: bool = False) -> SandboxResult:
    """Run `steps` one after another in one sandboxed work directory and return the first failing step's
    result (else the last's); never raises for what the programs do.

    `files`: relative path -> text, written into the work dir first. `steps`: `Step`s, or bare argvs run
    with `limits`. `tools`: name -> a host directory (a toolchain), used where it is when the sandbox user
    can read it there, else bind-mounted read-only at a fixed path (a toolchain under /root, which nobody
    cannot enter; relative symlinks leading out of a bound directory then break). `trees`: relative
    path -> a host directory copied into the work dir (a warm build cache: the copy, never the original, is
    what the programs can touch). `env`: added to the clean environment. `collect`: relative path -> host
    directory it is copied to when every step succeeded (trusted runs only, e.g. warming a build cache).
    No audit hook guards these programs, so they run only behind namespaces: at the "weak" barrier this
    raises SandboxUnavailable always, `allow_weak` or not. Raises SandboxUnavailable too when a tool cannot
    be shown to the sandbox user here."""
    plan = _plan()
    if plan.level == "weak":
        raise SandboxUnavailable(COMMANDS_NEED_NAMESPACES + (" (`sandbox: weak` was given, and does not cover "
                                                             "them)" if allow_weak else ""))
    places, binds = _place_tools(tools, plan)
    steps = [s if isinstance(s, Step) else Step(tuple(s), limits) for s in steps]
    work = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-out-"))
    try:
        _lay_out(work, files, trees, plan)
        mounts = [arg for name, source in binds.items() for arg in ("--bind", str(source), places[name])]

        def fill(text: str) -> str:
            for name, place in places.items():
                text = text.replace("{tool:" + name + "}", place)
            return text.replace("{work}", str(work))

        extra = {key: fill(value) for key, value in env.items()}
        result = None
        for i, step in enumerate(steps):
            result = _execute(work, logs, step.limits, "", plan, [fill(a) for a in step.argv], extra, mounts)
            result = dataclasses.replace(result, step=step.name or f"step {i + 1}")
            if not result.ok:
                return result
        for rel, dest in collect.items():
            shutil.copytree(_inside(work, rel), dest, symlinks=True, dirs_exist_ok=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def barrier() -> str:
    """The barrier runs get here: "root", "userns" or "weak" (see the module docstring)."""
    return _plan().level


def describe_barrier() -> str:
    """One line saying what isolates model-written code on this machine."""
    plan = _plan()
    if plan.level == "weak":
        return ("weak: audit hook and rlimits only, the network is not isolated "
                "(runs only with the explicit `sandbox: weak` opt-in)")
    who = "runs as nobody" if plan.level == "root" else "unprivileged user namespace without capabilities"
    files = ("read-only filesystem except its work dir, private /proc" if plan.mounts
             else "writes outside its work dir refused by the audit hook only")
    return f"{plan.level}: {who}, no network, own pid namespace, {files}; audit hook and rlimits"


@lru_cache(maxsize=1)
def _plan() -> Plan:
    """The strongest plan that runs a trivial program here (probed once per process)."""
    for plan in _candidates():
        if _run("pass", SandboxLimits(), "", plan).ok:
            return plan
    return WEAK


def _candidates() -> list[Plan]:
    if not (shutil.which("unshare", path=SANDBOX_PATH) and shutil.which("setpriv", path=SANDBOX_PATH)):
        return []
    level = "root" if os.geteuid() == 0 else "userns"
    return [Plan(level, True), Plan(level, False)]


def _place_tools(tools: Mapping[str, str | Path], plan: Plan) -> tuple[dict[str, str], dict[str, Path]]:
    """Where each tool is seen from the sandbox (its mount point when bound) and the host directories to
    bind; SandboxUnavailable when one cannot be shown to the sandbox user."""
    places, binds = {}, {}
    for name, where in tools.items():
        if not IDENTIFIER.match(name):
            raise ValueError(f"tool name {name!r}: use letters, digits, '_' and '-'")
        path = Path(where).resolve()
        if not path.is_dir():
            raise SandboxUnavailable(f"sandbox: toolchain directory {where} not found")
        if plan.level != "root" or _world_readable(path):
            places[name] = str(path)  # the sandbox user (nobody, or this uid in a user namespace) reads it there
        elif plan.mounts:
            places[name], binds[name] = str(_mount_point(name)), path
        else:
            raise SandboxUnavailable(
                f"sandbox: the toolchain at {path} is not readable by the sandbox user nobody (a parent "
                "directory lacks o+rx) and this kernel cannot bind-mount it for it (no mount_setattr, Linux "
                "5.12+); install the toolchain where every user may read it (e.g. RUSTUP_HOME=/opt/rustup, "
                "/usr/local/go) or use a newer kernel")
    return places, binds


def _mount_point(name: str) -> Path:
    """An empty directory of this uid where tool `name` is bound inside the sandbox's mount namespace: one
    fixed path per tool, so build caches keyed by the toolchain's path (Go's) stay valid from run to run."""
    top = Path(tempfile.gettempdir()) / f"cockpit-sandbox-tools-{os.getuid()}"
    for path in (top, top / name):
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            pass
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise SandboxUnavailable(f"sandbox: {path} is not a directory of uid {os.getuid()} writable by it "
                                     "alone; remove it (toolchains are bound there)")
    return top / name


def _lay_out(work: Path, files: Mapping[str, str], trees: Mapping[str, str | Path], plan: Plan) -> None:
    """The work dir's files and copied trees, owned by the sandbox user."""
    for rel, text in files.items():
        target = _inside(work, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for rel, source in trees.items():
        shutil.copytree(source, _inside(work, rel), symlinks=True)
    if plan.level == "root":
        for path in [work, *work.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)


def _inside(work: Path, rel: str) -> Path:
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(f"sandbox: {rel!r} is not a relative path inside the work dir")
    return work / rel


def _world_readable(path: Path) -> bool:
    """Whether any user may reach `path` (every parent o+x) and read it (o+r, and o+x for a directory)."""
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except OSError:
        return False
    own = 0o005 if real.is_dir() else 0o004
    return mode & own == own and all(p.stat().st_mode & 0o001 for p in real.parents)


def _run(code: str, limits: SandboxLimits, stdin: str, plan: Plan) -> SandboxResult:
    work = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="cockpit-sandbox-out-"))
    try:
        (work / "guard.py").write_text(GUARD)
        (work / "main.py").write_text(code)
        if plan.level == "root":
            os.chown(work, NOBODY, NOBODY)
        return _execute(work, logs, limits, stdin, plan)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _execute(work: Path, logs: Path, limits: SandboxLimits, stdin: str, plan: Plan,
             argv: list[str] | None = None, env: Mapping[str, str] = {}, binds: list[str] = []) -> SandboxResult:
    """One program in the sandbox: the guarded Python main.py, or `argv` (no audit hook) where given."""
    out_path, err_path = logs / "stdout", logs / "stderr"
    nproc = limits.processes if plan.level == "root" else _own_task_count() + limits.processes
    command = _command(plan) if argv is None else _wrap(plan, argv, binds)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=work, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                start_new_session=True, close_fds=True, env={**_clean_env(work), **env},
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


def _command(plan: Plan) -> list[str]:
    python = _interpreter_for_nobody() if plan.level == "root" else sys.executable
    program = [python, "-I", "-S", "-B", "guard.py", "main.py"]
    if plan.level == "weak":
        return program
    return _wrap(plan, program, [])


def _wrap(plan: Plan, program: list[str], binds: list[str]) -> list[str]:
    """`program` behind the plan's namespaces, mounts (with `binds`, --bind SOURCE TARGET...) and uid."""
    python = _interpreter_for_nobody() if plan.level == "root" else sys.executable
    jail = [python, "-I", "-S", "-c", JAIL, *binds] if plan.mounts else []
    return [*_unshare(plan), "--", *jail, *_drop_privileges(plan.level), "--", *program]


def _unshare(plan: Plan) -> list[str]:
    flags = ["--net", "--pid", "--fork", "--kill-child=SIGKILL"]
    if plan.level == "userns":
        flags = ["--user", "--map-root-user", *flags]
    if plan.mounts:
        flags += ["--mount", "--mount-proc"]
    return [shutil.which("unshare", path=SANDBOX_PATH), *flags]


def _drop_privileges(level: str) -> list[str]:
    """As root: become nobody. In a user namespace: stay its root (the caller's uid) without capabilities."""
    drop = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if level == "root" else [
        "--inh-caps=-all", "--bounding-set=-all"]
    return [shutil.which("setpriv", path=SANDBOX_PATH), *drop, "--no-new-privs"]


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


def _own_task_count() -> int:
    """Threads of this uid: RLIMIT_NPROC counts them all, so a sandbox not run as nobody adds to it."""
    uid, total = str(os.getuid()), 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            total += int(fields.get("Threads", "1"))
    return total


def _apply_limits(limits: SandboxLimits, nproc: int) -> None:
    """Runs in the child before exec: the rlimits every process of the sandbox inherits."""
    mem = limits.memory_mb * 1024 * 1024
    cpu = int(limits.wall_s) + 1
    files = limits.output_bytes if limits.file_bytes is None else limits.file_bytes
    resource.setrlimit(resource.RLIMIT_DATA if limits.memory_rlimit == "data" else resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _clean_env(work: Path) -> dict[str, str]:
    return {"PATH": SANDBOX_PATH, "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
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
