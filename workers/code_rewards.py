"""Execution rewards for model-written code (MBPP style), each program run in the sandbox.

Every reward has TRL's signature `f(prompts, completions, tests, **_) -> list[float]`: 1.0 when the
completion's code (its fenced block for the language, else its first fenced block, else the whole text)
compiles and passes every test of its row (`tests`: a list of lines or one string), else 0.0.

- `code_exec` (Python): the code, then the test lines (asserts), run by the sandbox's guarded Python.
- `code_exec_rust` (```rust): test lines become the body of a `#[test] fn` (rows may instead give their own
  `#[test]` functions, or a `fn main()` that asserts); `rustc --edition 2021 [--test] -C debuginfo=0
  -C linker=<cc on PATH>`, then the binary (`--test-threads=1`).
- `code_exec_go` (```go): the code as main.go (`package main` added when it has no package clause), the
  test lines as the body of `func TestCockpit(t *testing.T)` in main_test.go (their `import "x"` lines
  hoisted; rows may give whole `func TestX` functions, imports first), `go test -c -vet=off`, then the test
  binary.
  GOTOOLCHAIN=local, GOPROXY=off, CGO_ENABLED=0; a build cache warmed once per process (std packages
  compiled in the sandbox) is copied into each run.
- `code_exec_typescript` (```ts / ```typescript): the code, then the test lines in a block where
  `assert(cond, msg?)` and `console.assert(cond, ...)` throw; node 22.6+ runs it with its type stripping
  (syntax only, no type check), else `tsc --noEmitOnError` compiles it (it must type-check, lib es2022+dom)
  and node runs the output.

Steps run through `run_untrusted_command`: namespaces, read-only filesystem but the work dir, rlimits; no
audit hook, so never at the sandbox's "weak" barrier. Compile steps get COMPILE_LIMITS (RLIMIT_DATA, not
AS: compilers reserve address space freely), Rust programs RUN_LIMITS (RLIMIT_AS), Go programs and node
NODE_LIMITS (RLIMIT_DATA: the Go runtime and V8 reserve gigabytes of address space up front). Compilers run
as the sandboxed user too (nobody when root), so `include_str!("/etc/shadow")` and the like read only what
nobody may read; a toolchain nobody cannot reach (rustup's under /root) is bind-mounted read-only into the
sandbox's mount namespace rather than running the compiler with more rights (see workers/sandbox.py).

A toolchain missing here raises ToolchainMissing naming it (a config check catches it at load first).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

from core.errors import SpecError
from core.registry import REWARDS, requirement_problem, tool_version
from workers.rewards import completion_text
from workers.sandbox import SandboxLimits, Step, run_untrusted, run_untrusted_command

CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)
ANY_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
LIMITS = SandboxLimits(wall_s=5.0, memory_mb=512, processes=32, output_bytes=64_000)
RUN_LIMITS = SandboxLimits(wall_s=5.0, memory_mb=512, processes=32, output_bytes=64_000)
NODE_LIMITS = SandboxLimits(wall_s=5.0, memory_mb=512, processes=32, output_bytes=64_000, memory_rlimit="data")
GO_RUN_LIMITS = NODE_LIMITS  # the Go runtime reserves its page-summary address space up front: RLIMIT_DATA
COMPILE_LIMITS = SandboxLimits(wall_s=30.0, memory_mb=2048, processes=64, output_bytes=64_000,
                               memory_rlimit="data", file_bytes=64 * 1024 * 1024)
WARM_LIMITS = SandboxLimits(wall_s=300.0, memory_mb=2048, processes=64, output_bytes=64_000,
                            memory_rlimit="data", file_bytes=256 * 1024 * 1024)
HOST_ENV = {"GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTELEMETRY": "off"}
GO_ENV = {**HOST_ENV, "GOROOT": "{tool:go}", "GOCACHE": "{work}/.cache/go-build", "GOPATH": "{work}/.gopath",
          "GOMODCACHE": "{work}/.gopath/pkg/mod", "GO111MODULE": "on", "CGO_ENABLED": "0", "GOENV": "off",
          "TMPDIR": "{work}/.tmp"}  # go ignores a go.mod in the temp dir itself (the sandbox's default TMPDIR)
GO_TMP = {".tmp/.keep": ""}
GO_WARM = ("bytes", "errors", "fmt", "math", "reflect", "sort", "strconv", "strings", "unicode", "unicode/utf8")
GO_WARM_121 = ("maps", "slices")  # std from Go 1.21
TS_HARNESS = """
;{{
const assert = (condition: unknown, message?: string): void => {{
  if (!condition) throw new Error(message ?? "assertion failed");
}};
console.assert = (condition?: unknown, ...data: unknown[]): void => {{
  if (!condition) throw new Error("assertion failed: " + data.join(" "));
}};
{tests}
}}
"""


class ToolchainMissing(SpecError):
    """A language's compiler or runtime is not usable on this machine."""


class Job(NamedTuple):
    """What one completion's check runs: files, steps and what the sandbox must show or copy in."""

    files: dict[str, str]
    steps: list[Step]
    tools: Mapping[str, str] = {}
    trees: Mapping[str, str] = {}
    env: Mapping[str, str] = {}


def extract_code(text: str) -> str:
    """The first fenced code block, or the whole text when there is none."""
    found = CODE_BLOCK.search(text)
    return found.group(1) if found else text


def extract_block(text: str, languages: tuple[str, ...]) -> str:
    """The first block fenced as one of `languages`, else the first fenced block, else the whole text."""
    names = "|".join(re.escape(name) for name in languages)
    found = re.search(rf"```(?:{names})[ \t]*\n(.*?)```", text, re.DOTALL | re.IGNORECASE) or ANY_BLOCK.search(text)
    return found.group(1) if found else text


def row_lines(tests) -> list[str]:
    """A row's tests as lines (a list of lines or one string)."""
    return [str(t) for t in tests] if isinstance(tests, (list, tuple)) else [str(tests)]


def program_with_tests(code: str, tests) -> str:
    """The candidate code followed by the row's tests (a list of assert lines or one string)."""
    return code.rstrip() + "\n\n" + "\n".join(row_lines(tests)) + "\n"


def code_exec(prompts, completions, tests, allow_weak: bool = False, **_) -> list[float]:
    """1.0 when the completion's code passes every test of its row in the sandbox, else 0.0.
    `allow_weak` (config `sandbox: weak`) lets it run where the sandbox has only its weakest barrier."""
    rewards = []
    for completion, row_tests in zip(completions, tests):
        program = program_with_tests(extract_code(completion_text(completion)), row_tests)
        rewards.append(1.0 if run_untrusted(program, LIMITS, allow_weak=allow_weak).ok else 0.0)
    return rewards


def code_exec_rust(prompts, completions, tests, allow_weak: bool = False, **_) -> list[float]:
    """1.0 when the completion's Rust compiles with rustc and passes every test of its row, else 0.0.
    Compiled programs have no audit hook: `allow_weak` does not let them run at the weak barrier."""
    return _score("code_exec_rust", completions, tests, _rust_job, allow_weak)


def code_exec_go(prompts, completions, tests, allow_weak: bool = False, **_) -> list[float]:
    """1.0 when the completion's Go compiles and passes every test of its row (go test), else 0.0."""
    return _score("code_exec_go", completions, tests, _go_job, allow_weak)


def code_exec_typescript(prompts, completions, tests, allow_weak: bool = False, **_) -> list[float]:
    """1.0 when the completion's TypeScript runs on node and passes every test of its row, else 0.0."""
    return _score("code_exec_typescript", completions, tests, _typescript_job, allow_weak)


def _score(name: str, completions, tests, job_of: Callable[[str, list[str]], Job], allow_weak: bool) -> list[float]:
    problem = requirement_problem(REWARDS[name])
    if problem:
        raise ToolchainMissing(problem)
    rewards = []
    for completion, row_tests in zip(completions, tests):
        job = job_of(completion_text(completion), row_lines(row_tests))
        result = run_untrusted_command(job.files, job.steps, tools=job.tools, trees=job.trees, env=job.env,
                                       allow_weak=allow_weak)
        rewards.append(1.0 if result.ok else 0.0)
    return rewards


# --- Rust ------------------------------------------------------------------------------------------------

def _rust_job(text: str, tests: list[str]) -> Job:
    code, body = extract_block(text, ("rust", "rs")), "\n".join(tests)
    harness = "#[test]" in body or not re.search(r"\bfn\s+main\s*\(", body)
    if "#[test]" in body or not harness:
        source = f"{code.rstrip()}\n\n{body}\n"
    else:
        source = f"{code.rstrip()}\n\n#[test]\nfn cockpit_tests() {{\n{body}\n}}\n"
    compile_ = ("{tool:rust}/bin/rustc", "--edition", "2021", *(("--test",) if harness else ()),
                "-C", "debuginfo=0", "-C", f"linker={_which('cc')}", "-o", "prog", "main.rs")
    run = ("./prog", "--test-threads=1") if harness else ("./prog",)
    return Job({"main.rs": source}, [Step(compile_, COMPILE_LIMITS, "compile"), Step(run, RUN_LIMITS, "run")],
               tools={"rust": _rust_sysroot(_which("rustc"))}, env={"RUST_BACKTRACE": "0"})


@lru_cache(maxsize=4)
def _rust_sysroot(rustc: str) -> str:
    """The toolchain directory the (maybe rustup proxy) `rustc` stands for; its bin/rustc is the compiler."""
    done = _host([rustc, "--print", "sysroot"])
    sysroot = done.stdout.strip()
    if done.returncode or not Path(sysroot, "bin", "rustc").is_file():
        raise ToolchainMissing(f"code_exec_rust: `{rustc} --print sysroot` failed: {done.stderr.strip()[-300:]}")
    return sysroot


# --- Go --------------------------------------------------------------------------------------------------

def _go_job(text: str, tests: list[str]) -> Job:
    code = extract_block(text, ("go", "golang"))
    package = re.search(r"^\s*package\s+(\w+)", code, re.MULTILINE)
    if not package:
        code = "package main\n\n" + code
    name = package.group(1) if package else "main"
    imports = [line.strip() for line in tests if re.match(r"\s*import\s", line)]
    body = "\n".join(line for line in tests if not re.match(r"\s*import\s", line))
    if re.search(r"\bfunc\s+Test\w*\s*\(", body):  # whole test functions, their imports first
        whole = "\n".join(tests)
        test_file = whole if re.search(r"^\s*package\s", whole, re.MULTILINE) else f"package {name}\n\n{whole}\n"
    else:
        test_file = (f"package {name}\n\nimport \"testing\"\n" + "".join(f"{i}\n" for i in imports)
                     + f"\nfunc TestCockpit(t *testing.T) {{\n{body}\n}}\n")
    goroot, version, warm = _go_toolchain(_which("go"))
    files = {**GO_TMP, "go.mod": f"module cockpit\n\ngo {version}\n", "main.go": code, "main_test.go": test_file}
    steps = [Step(("{tool:go}/bin/go", "test", "-c", "-vet=off", "-o", "prog.test", "."), COMPILE_LIMITS, "compile"),
             Step(("./prog.test", "-test.count=1"), GO_RUN_LIMITS, "run")]
    return Job(files, steps, tools={"go": goroot}, trees={".cache/go-build": warm}, env=GO_ENV)


@lru_cache(maxsize=4)
def _go_toolchain(go: str) -> tuple[str, str, str]:
    """GOROOT, the language version ("1.22") and a build cache holding the std packages tests use, compiled
    once per process in the sandbox (where GOROOT is seen, so the cache's keys match)."""
    done = _host([go, "env", "GOROOT", "GOVERSION"], env=HOST_ENV)
    lines = done.stdout.split()
    found = re.match(r"go(\d+)\.(\d+)", lines[1]) if len(lines) == 2 else None
    if done.returncode or not found:
        raise ToolchainMissing(f"code_exec_go: `{go} env GOROOT GOVERSION` failed: {done.stderr.strip()[-300:]}")
    goroot, version = lines[0], f"{found.group(1)}.{found.group(2)}"
    warm = tempfile.mkdtemp(prefix="cockpit-go-cache-")
    atexit.register(shutil.rmtree, warm, True)
    packages = GO_WARM + (GO_WARM_121 if (int(found.group(1)), int(found.group(2))) >= (1, 21) else ())
    files = {**GO_TMP, "go.mod": f"module cockpit\n\ngo {version}\n",
             "main.go": "package main\n\nimport (\n" + "".join(f'\t_ "{p}"\n' for p in packages)
                        + ")\n\nfunc main() {}\n",
             "main_test.go": "package main\n\nimport \"testing\"\n\nfunc TestWarm(t *testing.T) {}\n"}
    result = run_untrusted_command(
        files, [Step(("{tool:go}/bin/go", "test", "-c", "-vet=off", "-o", "prog.test", "."), WARM_LIMITS, "warm")],
        tools={"go": goroot}, env=GO_ENV, collect={".cache/go-build": warm})
    if not result.ok:
        raise ToolchainMissing(f"code_exec_go: warming the Go build cache failed: {result.stderr.strip()[-500:]}")
    return goroot, version, warm


# --- TypeScript ------------------------------------------------------------------------------------------

def _typescript_job(text: str, tests: list[str]) -> Job:
    code = extract_block(text, ("typescript", "ts", "tsx"))
    source = code.rstrip() + "\n" + TS_HARNESS.format(tests="\n".join(tests))
    (node_dir, node), flags = _node(_which("node")), _strip_flags(_which("node"))
    memory = f"--max-old-space-size={NODE_LIMITS.memory_mb // 2}"
    if flags is not None:
        run = Step((node, *flags, "--no-warnings", memory, "main.ts"), NODE_LIMITS, "run")
        return Job({"main.ts": source}, [run], tools={"node": node_dir})
    tsc_dir = _tsc_package(_which("tsc"))
    compile_ = Step((node, "{tool:typescript}/bin/tsc", "--outDir", "out", "--target", "es2022", "--module",
                     "commonjs", "--lib", "es2022,dom", "--noEmitOnError", "--skipLibCheck", "--pretty", "false",
                     "main.ts"), COMPILE_LIMITS, "compile")
    run = Step((node, "--no-warnings", memory, "out/main.js"), NODE_LIMITS, "run")
    return Job({"main.ts": source}, [compile_, run], tools={"node": node_dir, "typescript": tsc_dir})


@lru_cache(maxsize=4)
def _node(node: str) -> tuple[str, str]:
    """node's install prefix (shown to the sandbox) and its path as seen there."""
    real = Path(node).resolve()
    return str(real.parent.parent), "{tool:node}/" + str(real.relative_to(real.parent.parent))


@lru_cache(maxsize=4)
def _strip_flags(node: str) -> tuple[str, ...] | None:
    """The flags with which this node runs TypeScript (enums too where it can), None when it cannot."""
    version = tool_version(node) or ()
    if version < (22, 6):
        return None
    with tempfile.TemporaryDirectory() as probe:
        for flags, code in ((("--experimental-transform-types",), "enum E { A }\nconst x: number = E.A\n"),
                            (("--experimental-strip-types",), "const x: number = 1\n"),
                            ((), "const x: number = 1\n")):
            Path(probe, "probe.ts").write_text(code)
            if _host([node, *flags, "--no-warnings", str(Path(probe, "probe.ts"))]).returncode == 0:
                return flags
    return None


@lru_cache(maxsize=4)
def _tsc_package(tsc: str) -> str:
    """The typescript package directory of the `tsc` on PATH (its bin/tsc is a node script)."""
    package = Path(tsc).resolve().parent.parent
    if not (package / "bin" / "tsc").is_file():
        raise ToolchainMissing(f"code_exec_typescript: {tsc} is not TypeScript's bin/tsc")
    return str(package)


# --- helpers ---------------------------------------------------------------------------------------------

def _which(exe: str) -> str:
    path = shutil.which(exe)
    if not path:
        raise ToolchainMissing(f"{exe!r} is not on PATH")
    return path


def _host(argv: list[str], env: Mapping[str, str] = {}) -> subprocess.CompletedProcess:
    """A trusted toolchain query on the host (never model-written code)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
                              cwd="/")  # no rust-toolchain.toml or go.work of the caller's directory applies
    except (OSError, subprocess.SubprocessError) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))
