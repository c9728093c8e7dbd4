"""Sandboxed code rewards: hostile programs get reward 0 and leave this process unharmed."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from core.errors import SpecError
from workers import sandbox
from workers.code_rewards import code_exec, extract_code
from workers.sandbox import SandboxLimits, run_untrusted

pytestmark = pytest.mark.faults
FAST = SandboxLimits(wall_s=2.0, memory_mb=256, processes=16, output_bytes=10_000)
TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]


def reward_of(code: str) -> float:
    return code_exec(["p"], [f"```python\n{code}\n```"], [TESTS])[0]


def test_correct_code_earns_reward_and_wrong_code_does_not():
    assert reward_of("def add(a, b):\n    return a + b") == 1.0
    assert reward_of("def add(a, b):\n    return a - b") == 0.0
    assert extract_code("no fence: x = 1") == "no fence: x = 1"


def test_conversational_completions_are_read():
    completion = [{"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"}]
    assert code_exec(["p"], [completion], [TESTS]) == [1.0]


@pytest.mark.parametrize("name, code", [
    ("infinite loop", "def add(a, b):\n    while True:\n        pass"),
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
    ("10 GB allocation", "x = bytearray(10 * 1024 ** 3)\ndef add(a, b):\n    return a + b"),
    ("write outside", "open('/tmp/cockpit-sandbox-escape.txt', 'w').write('x')\ndef add(a, b):\n    return a + b"),
    ("network", "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\ndef add(a, b):\n"
                "    return a + b"),
    ("output flood", "print('x' * 50_000_000)\ndef add(a, b):\n    return a + b"),
])
def test_hostile_code_gets_zero_and_the_worker_is_unharmed(name, code):
    me = psutil.Process()
    children_before = len(me.children(recursive=True))
    t0 = time.monotonic()
    assert reward_of(code) == 0.0
    assert time.monotonic() - t0 < 15, f"{name} took too long"
    assert not os.path.exists("/tmp/cockpit-sandbox-escape.txt")
    deadline = time.monotonic() + 5
    while len(me.children(recursive=True)) > children_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(me.children(recursive=True)) == children_before, "sandbox processes outlived the run"
    assert me.memory_info().rss < 4 * 1024 ** 3


def test_temporary_directory_is_removed_and_output_is_capped():
    result = run_untrusted("import os\nprint(os.getcwd())\nprint('y' * 50_000)", FAST)
    workdir = result.stdout.splitlines()[0]
    assert workdir.startswith("/") and not os.path.exists(workdir)
    assert len(result.stdout) <= FAST.output_bytes


def test_time_limit_is_enforced():
    t0 = time.monotonic()
    result = run_untrusted("import time\ntime.sleep(60)", FAST)
    assert result.timed_out and not result.ok
    assert time.monotonic() - t0 < FAST.wall_s + 3


# --- The barrier without root (issue 10, item 6) ------------------------------------------------------
# Each probe runs the sandbox from a child process: as this user (root here: the "root" barrier) and as
# nobody (an unprivileged uid: the "userns" barrier where the kernel allows user namespaces, else a
# refusal). Leaks are aimed at a world-writable directory, so only the sandbox can stop them.
REPO = Path(sandbox.__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
RUNNER = r'''
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from workers import sandbox
job = json.loads(sys.argv[2])
sandbox.GUARD = job["guard"] or sandbox.GUARD
try:
    result = sandbox.run_untrusted(job["code"], sandbox.SandboxLimits(**job["limits"]))
    print(json.dumps(dataclasses.asdict(result)))
except sandbox.SandboxUnavailable as refused:
    print(json.dumps({"refused": str(refused)}))
'''
REPORT = ("import json, sys; sys.path.insert(0, sys.argv[1]); from workers import sandbox; "
          "print(json.dumps([sandbox.barrier(), sandbox.describe_barrier()]))")
HOOKLESS_GUARD = ("import sys\nsys.argv = sys.argv[1:]\n"
                  "exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'), {'__name__': '__main__'})\n")
WRITE_PROBES = {
    "os.open flags": "import os\nos.open({out!r}, os.O_WRONLY | os.O_CREAT)",
    "sh -c in a subprocess": "import subprocess\nsubprocess.run(['sh', '-c', 'echo x > {out}'])",
    "os.system": "import os\nos.system('echo x > {out}')",
}


def nobody_unavailable() -> str:
    """Why the sandbox cannot be started from the unprivileged uid nobody here ('' when it can)."""
    if os.geteuid() != 0:
        return "dropping to an unprivileged uid needs root"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is missing"
    python = sandbox._interpreter_for_nobody()
    if not sandbox._world_executable(Path(python)):
        return f"no Python that nobody may execute (found only {python})"
    smoke = subprocess.run([*AS_NOBODY, python, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                            "import workers.sandbox"], capture_output=True, text=True, cwd="/", env=ENV)
    return f"nobody cannot import workers.sandbox: {smoke.stderr[-300:]}" if smoke.returncode else ""


@pytest.fixture(scope="module")
def users():
    """Interpreter command lines by user (this one; nobody where possible) and why nobody is missing."""
    why_not = nobody_unavailable()
    found = {"this user": [sys.executable]}
    if not why_not:
        found["nobody"] = [*AS_NOBODY, sandbox._interpreter_for_nobody()]
    return found, why_not


def each_user(users):
    """Yields (user, argv) for every user; skips the test at the end when nobody could not be tried."""
    found, why_not = users
    yield from found.items()
    if why_not:
        pytest.skip(f"checked as this user only: {why_not}")


def sandboxed(argv: list[str], code: str, guard: str = "") -> dict:
    """The SandboxResult (as a dict) of `code` run by a runner started with `argv`, or {'refused': ...}."""
    job = json.dumps({"code": code, "guard": guard, "limits": dataclasses.asdict(FAST)})
    done = subprocess.run([*argv, "-I", "-c", RUNNER, str(REPO), job], capture_output=True, text=True,
                          cwd="/", env=ENV, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def outside(users):
    """A world-writable directory outside the sandbox: a leak, even as nobody, would create files here."""
    path = Path(tempfile.mkdtemp(prefix="cockpit-outside-", dir="/tmp"))
    path.chmod(0o777)
    if "nobody" in users[0]:
        subprocess.run([*AS_NOBODY, "sh", "-c", f": > {path}/control"], check=True, cwd="/", env=ENV)
        assert (path / "control").exists(), "nobody could not write the probe directory"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_barrier_is_reported_and_described(users):
    expected = {"this user": {"root"} if os.geteuid() == 0 else {"userns", "weak"}, "nobody": {"userns", "weak"}}
    for user, argv in each_user(users):
        done = subprocess.run([*argv, "-I", "-c", REPORT, str(REPO)], capture_output=True, text=True, cwd="/",
                              env=ENV, check=True)
        level, description = json.loads(done.stdout)
        assert level in expected[user] and description.startswith(f"{level}: "), (user, description)


def test_a_child_process_cannot_reach_a_listener_on_the_host(users, listener):
    port = listener.port
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    for user, argv in each_user(users):
        sandboxed(argv, f"import subprocess\nsubprocess.run(['python3', '-c', {connect!r}])")
        assert not listener.reached(), f"a child of the sandboxed code reached the host as {user}"


@pytest.mark.parametrize("probe", WRITE_PROBES)
def test_writes_outside_the_work_dir_are_blocked(users, outside, probe):
    for user, argv in each_user(users):
        target = outside / f"{probe.replace(' ', '-')}-{user.replace(' ', '-')}"
        sandboxed(argv, WRITE_PROBES[probe].format(out=str(target)))
        assert not target.exists(), f"{probe} wrote outside the sandbox as {user}"


def test_namespaces_alone_hold_without_the_audit_hook(users, outside, listener):
    # The audit hook is swapped for a plain runner here, to prove the namespaces are a barrier by themselves.
    port = listener.port
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            f"except OSError:\n    pass\nopen({str(outside / 'escaped')!r}, 'w').write('x')\n")
    for user, argv in each_user(users):
        sandboxed(argv, code, guard=HOOKLESS_GUARD)
        assert not listener.reached(), f"the sandboxed code reached the host as {user}"
        assert not (outside / "escaped").exists(), f"the sandboxed code wrote outside as {user}"


def test_weak_barrier_is_refused_unless_opted_in(monkeypatch, outside, listener):
    # The one thing mocked: namespace detection, to act as a machine without root or user namespaces.
    monkeypatch.setattr(sandbox, "_plan", lambda: sandbox.WEAK)
    assert sandbox.barrier() == "weak" and "network is not isolated" in sandbox.describe_barrier()
    with pytest.raises(sandbox.SandboxUnavailable, match="sandbox: weak") as refused:
        run_untrusted("print('hi')", FAST)
    assert isinstance(refused.value, SpecError)
    assert run_untrusted("print('hi')", FAST, allow_weak=True).stdout == "hi\n"
    port = listener.port
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    for probe in [f"import subprocess\nsubprocess.run(['python3', '-c', {connect!r}])",
                  *(code.format(out=str(outside / "escaped")) for code in WRITE_PROBES.values())]:
        assert not run_untrusted(probe, FAST, allow_weak=True).ok
    assert not listener.reached() and not (outside / "escaped").exists()
