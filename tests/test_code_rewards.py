"""Execution rewards for Rust, Go and TypeScript (issue 12, item 2), and the sandbox's command runner under them.

Each language's tests skip, naming what is missing, where its toolchain is not on PATH here (the same
sentence the config check gives at load). Hostile programs are marked `faults`; the rest are ordinary.
"""
import dataclasses
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import psutil
import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError
from core.registry import REWARDS, requirement_problem
from workers import code_rewards, sandbox
from workers.code_rewards import ToolchainMissing, code_exec_go, code_exec_rust, code_exec_typescript, extract_block
from workers.sandbox import SandboxUnavailable, Step, run_untrusted_command

FAST_WALL = 2.0


class Lang(NamedTuple):
    reward: Callable
    name: str
    fence: str
    tests: list[str]
    correct: str
    wrong: str
    broken: str
    loop: str
    network: str   # {port}: connects to the host's 127.0.0.1:{port}, fails its tests when it cannot
    write: str     # {out}: writes there, fails its tests when it cannot
    spawn: str     # {marker}: starts `sleep {marker}` in the background first


LANGS = {
    "rust": Lang(
        code_exec_rust, "code_exec_rust", "rust", ["assert_eq!(add(2, 3), 5);", "assert_eq!(add(-1, 1), 0);"],
        correct="fn add(a: i32, b: i32) -> i32 { a + b }",
        wrong="fn add(a: i32, b: i32) -> i32 { a - b }",
        broken="fn add(a: i32, b: i32) -> i32 { a + }",
        loop="fn add(a: i32, b: i32) -> i32 { loop {} }",
        network='fn add(a: i32, b: i32) -> i32 {{\n{spawn}\n    std::net::TcpStream::connect("127.0.0.1:{port}")'
                '.expect("no network");\n    a + b\n}}',
        write='fn add(a: i32, b: i32) -> i32 {{\n{spawn}\n    std::fs::write("{out}", "x").expect("no write");\n'
              '    a + b\n}}',
        spawn='    let _ = std::process::Command::new("sleep").arg("{marker}").spawn();'),
    "go": Lang(
        code_exec_go, "code_exec_go", "go",
        ['if Add(2, 3) != 5 { t.Fatal("Add(2, 3)") }', 'if Add(-1, 1) != 0 { t.Fatal("Add(-1, 1)") }'],
        correct="func Add(a, b int) int { return a + b }",
        wrong="func Add(a, b int) int { return a - b }",
        broken="func Add(a, b int) int { return a + }",
        loop="func Add(a, b int) int { for {} }",
        network='import (\n\t"net"\n\t"os/exec"\n)\n\nfunc Add(a, b int) int {{\n{spawn}\n'
                '\tc, err := net.Dial("tcp", "127.0.0.1:{port}")\n\tif err != nil {{ panic(err) }}\n\tc.Close()\n'
                '\treturn a + b\n}}',
        write='import (\n\t"os"\n\t"os/exec"\n)\n\nfunc Add(a, b int) int {{\n{spawn}\n'
              '\tif err := os.WriteFile("{out}", []byte("x"), 0o644); err != nil {{ panic(err) }}\n\treturn a + b\n}}',
        spawn='\t_ = exec.Command("sleep", "{marker}").Start()'),
    "typescript": Lang(
        code_exec_typescript, "code_exec_typescript", "ts",
        ["assert(add(2, 3) === 5)", "console.assert(add(-1, 1) === 0)"],
        correct="function add(a: number, b: number): number { return a + b }",
        wrong="function add(a: number, b: number): number { return a - b }",
        broken="function add(a: number, b: number): number { return a + }",
        loop="function add(a: number, b: number): number { while (true) {} }",
        # `declare` keeps tsc's type check quiet (no @types/node) and is stripped by node
        network='declare const require: any, process: any\n{spawn}\n'
                'const socket = require("net").connect({port}, "127.0.0.1")\n'
                'socket.on("error", () => process.exit(3))\nsocket.on("connect", () => process.exit(0))\n'
                'function add(a: number, b: number): number {{ return a + b }}',
        write='declare const require: any\n{spawn}\nrequire("fs").writeFileSync("{out}", "x")\n'
              'function add(a: number, b: number): number {{ return a + b }}',
        spawn='require("child_process").spawn("sleep", ["{marker}"], {{detached: true, stdio: "ignore"}}).unref()'),
}


def lang_param(name: str, *marks):
    problem = requirement_problem(REWARDS[LANGS[name].name])
    return pytest.param(name, id=name, marks=[*marks, pytest.mark.skipif(bool(problem), reason=problem or "")])


ALL = [lang_param(name) for name in LANGS]
HOSTILE = [lang_param(name, pytest.mark.faults) for name in LANGS]


def reward_of(lang: Lang, code: str) -> float:
    return lang.reward(["p"], [f"Here it is:\n```{lang.fence}\n{code}\n```\n"], [lang.tests])[0]


@pytest.mark.parametrize("name", ALL)
def test_correct_code_earns_one_and_wrong_or_broken_code_zero(name):
    lang = LANGS[name]
    assert reward_of(lang, lang.correct) == 1.0
    assert reward_of(lang, lang.wrong) == 0.0
    assert reward_of(lang, lang.broken) == 0.0  # a compile (or syntax) error


@pytest.mark.parametrize("name", ALL)
def test_an_infinite_loop_gets_zero_within_the_time_limit(name, monkeypatch):
    for limits in ("RUN_LIMITS", "GO_RUN_LIMITS", "NODE_LIMITS"):
        monkeypatch.setattr(code_rewards, limits, dataclasses.replace(getattr(code_rewards, limits), wall_s=FAST_WALL))
    lang = LANGS[name]
    reward_of(lang, lang.correct)  # toolchain warm-up (Go's build cache) outside the timing
    t0 = time.monotonic()
    assert reward_of(lang, lang.loop) == 0.0
    assert time.monotonic() - t0 < FAST_WALL + 10  # the compile step plus the run's wall limit


WHOLE_TESTS = {
    "rust #[test]": ("rust", ["#[test]", "fn adds() { assert_eq!(add(2, 3), 5); }"]),
    "rust fn main": ("rust", ["fn main() {", "    assert_eq!(add(2, 3), 5);", "}"]),
    "go func Test": ("go", ['import "reflect"', "func TestAdd(t *testing.T) {",
                            "    if !reflect.DeepEqual([]int{Add(2, 3)}, []int{5}) { t.Fatal(Add(2, 3)) }", "}"]),
}


@pytest.mark.parametrize("case", [pytest.param(case, marks=lang_param(lang).marks, id=case)
                                  for case, (lang, _) in WHOLE_TESTS.items()])
def test_rows_may_give_whole_test_functions(case):
    name, tests = WHOLE_TESTS[case]
    lang = LANGS[name]
    if name == "go":
        tests = ['import "testing"', *tests]
    for code, expected in ((lang.correct, 1.0), (lang.wrong, 0.0)):
        assert lang.reward(["p"], [f"```{lang.fence}\n{code}\n```"], [tests]) == [expected], (case, code)


def test_the_language_block_is_taken_before_other_blocks():
    text = "```text\nnotes\n```\n```Rust\nfn f() {}\n```"
    assert extract_block(text, ("rust", "rs")) == "fn f() {}\n"
    assert extract_block("```\nfn g() {}\n```", ("rust",)) == "fn g() {}\n"
    assert extract_block("fn h() {}", ("rust",)) == "fn h() {}"


# --- Hostile programs -------------------------------------------------------------------------------------

@pytest.fixture
def outside():
    """A world-writable directory outside the sandbox: only the sandbox can stop a write there."""
    path = Path(tempfile.mkdtemp(prefix="cockpit-outside-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)



@pytest.fixture
def private_tmp(monkeypatch):
    """The sandbox's temporary directories go here for the test, so what a run leaves behind shows."""
    path = Path(tempfile.mkdtemp(prefix="cockpit-code-tmp-", dir="/tmp"))
    path.chmod(0o755)  # nobody must reach its work dir inside
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", ["network", "write"])
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_program_gets_zero_and_leaves_nothing_behind(name, kind, outside, listener, request):
    lang = LANGS[name]
    reward_of(lang, lang.correct)  # warm the toolchain (Go's cache) before temp dirs are watched
    private = request.getfixturevalue("private_tmp")
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10 ** 6}"
    code = getattr(lang, kind).format(spawn=lang.spawn.format(marker=marker), port=listener.port,
                                      out=outside / "escaped")
    me = psutil.Process()
    children = len(me.children(recursive=True))
    assert reward_of(lang, code) == 0.0
    assert not listener.reached(), f"{name} reached the host's network"
    assert not (outside / "escaped").exists(), f"{name} wrote outside its work dir"
    assert [p.name for p in private.iterdir() if not p.name.startswith("cockpit-sandbox-tools-")] == [], \
        "a work dir outlived the run"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (len(me.children(recursive=True)) > children or sleepers(marker)):
        time.sleep(0.1)
    assert len(me.children(recursive=True)) == children and not sleepers(marker), "a process outlived the run"


def sleepers(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] and proc.info["cmdline"][-1:] == [marker]:
            found.append(proc.pid)
    return found


# --- The command runner -----------------------------------------------------------------------------------

def test_steps_stop_at_the_first_failure_and_say_which():
    result = run_untrusted_command({"a.txt": "hi\n"}, [Step(("cat", "a.txt"), name="show"),
                                                       Step(("sh", "-c", "exit 3"), name="fail"),
                                                       Step(("sh", "-c", "echo never"), name="after")])
    assert (result.exit_code, result.step, result.stdout) == (3, "fail", "")
    ok = run_untrusted_command({}, [["sh", "-c", "echo {work} > w; cat w"]])
    assert ok.ok and ok.stdout.startswith("/") and ok.step == "step 1"
    with pytest.raises(ValueError):
        run_untrusted_command({"../x": ""}, [["true"]])


def test_a_toolchain_the_sandbox_user_cannot_reach_is_bound_read_only(tmp_path):
    hidden = tmp_path / "home"  # like /root: mode 0700
    tool = hidden / "toolchain"
    tool.mkdir(parents=True)
    hidden.chmod(0o700)
    (tool / "hello.sh").write_text("echo hello from the toolchain\n")
    steps = [Step(("sh", "{tool:t}/hello.sh")), Step(("sh", "-c", "echo x > {tool:t}/new"))]
    result = run_untrusted_command({}, steps, tools={"t": tool})
    assert result.stdout == "" and result.step == "step 2" and not result.ok  # ran, but could not write there
    assert not (tool / "new").exists()
    assert run_untrusted_command({}, steps[:1], tools={"t": tool}).stdout == "hello from the toolchain\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox runs as nobody only when started as root")
def test_an_unreachable_toolchain_without_mounts_is_refused_naming_it(tmp_path, monkeypatch):
    hidden = tmp_path / "home" / "toolchain"
    hidden.mkdir(parents=True)
    (tmp_path / "home").chmod(0o700)
    monkeypatch.setattr(sandbox, "_plan", lambda: sandbox.Plan("root", False))  # a kernel without mount_setattr
    with pytest.raises(SandboxUnavailable, match=f"{hidden}.*not readable by the sandbox user nobody"):
        run_untrusted_command({}, [["true"]], tools={"t": hidden})


def test_non_python_programs_never_run_at_the_weak_barrier(monkeypatch):
    # The one thing mocked: namespace detection, to act as a machine without root or user namespaces.
    monkeypatch.setattr(sandbox, "_plan", lambda: sandbox.WEAK)
    for allow_weak in (False, True):
        with pytest.raises(SandboxUnavailable, match="no audit hook"):
            run_untrusted_command({}, [["true"]], allow_weak=allow_weak)


# --- Missing toolchains -----------------------------------------------------------------------------------

GRPO = """
name: probe
stages:
  - name: rl
    kind: grpo
    data: {data}
    rewards: [code_exec, {reward}]
    train: {{steps: 2, batch_size: 2, num_generations: 2, max_completion_length: 4}}
"""


@pytest.mark.parametrize("reward, words", [
    ("code_exec_go", "code_exec_go needs 'go' on PATH (not found); install the Go toolchain or drop the reward"),
    ("code_exec_rust", "code_exec_rust needs 'rustc' on PATH (not found)"),
    ("code_exec_typescript", "code_exec_typescript needs 'node' on PATH (not found)"),
])
def test_a_missing_toolchain_is_a_config_error_naming_it(tmp_path, monkeypatch, reward, words):
    # Simulated on any machine: PATH is an empty directory, so no toolchain is found (go is missing on the
    # development machine anyway; rustc and node are there).
    rows = tmp_path / "code.jsonl"
    rows.write_text('{"prompt": "write add", "tests": ["x"]}\n')
    config = tmp_path / "probe.yaml"
    config.write_text(GRPO.format(data=rows, reward=reward))
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ConfigError, match="stages.0.rewards.1") as refused:
        load_curriculum(config)
    assert words in str(refused.value)
    with pytest.raises(ToolchainMissing, match=words.split(" (")[0]):
        LANGS[reward.rsplit("_", 1)[1]].reward(["p"], ["x"], [["x"]])


def test_a_node_too_old_for_typescript_is_named_with_its_version(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text("#!/bin/sh\necho v20.1.0\n")
    node.chmod(node.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    problem = requirement_problem(REWARDS["code_exec_typescript"])
    assert problem.startswith("code_exec_typescript needs 'node' 22.6+ or 'tsc' on PATH "
                              "(node: found 20.1.0; tsc: not found); install Node.js 22.6+"), problem
