"""Sandboxed code rewards: hostile programs get reward 0 and leave this process unharmed."""
import os
import time

import psutil
import pytest

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
