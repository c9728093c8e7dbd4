"""The house rules, read from the imports: which package may import which, no circles, no textual on the
headless paths, no front-end code in core/."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "workers", "tui", "cli")
# package -> the packages (and front-end libraries) it may import; the only arrows in the house
ALLOWED = {"core": {"core"}, "workers": {"workers", "core"}, "tui": {"tui", "core"}, "cli": {"cli", "core", "tui"}}
FRONT_END_LIBRARIES = {"textual", "rich", "argparse"}
CHECK = """
import importlib, pkgutil, sys
import core, workers
for pkg in (core, workers):
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
from cli.main import build_parser
build_parser().parse_args(["run", "--batch"])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "tui"))
print("BAD", bad)
"""


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module `path` imports, at the top or inside a function (a lazy import is still an arrow)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return {n if n in known else n.rsplit(".", 1)[0] if n.rsplit(".", 1)[0] in known else n for n in names}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) for name, path in known.items()}


def test_packages_import_only_along_the_allowed_arrows():
    wrong = [f"{mod} imports {dep}" for mod, deps in graph().items() for dep in deps
             if dep.split(".")[0] in PACKAGES and dep.split(".")[0] not in ALLOWED[mod.split(".")[0]]]
    assert wrong == []


def test_core_holds_no_front_end_code():
    wrong = [f"{mod} imports {dep}" for mod, deps in graph().items() if mod.startswith("core")
             for dep in deps if dep.split(".")[0] in FRONT_END_LIBRARIES]
    assert wrong == []


def test_no_import_circles():
    edges = {m: {d for d in deps if d in modules() and d != m} for m, deps in graph().items()}
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert cycles == []


def test_the_batch_cli_never_imports_textual():
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("BAD []"), done.stdout


LISTING = """
import sys
from cli.main import main
sys.argv = ["cockpit", "--runs-dir", sys.argv[1], sys.argv[2]]
try:
    main()
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("pydantic", "torch", "transformers", "textual") if m in sys.modules))
"""


@pytest.mark.parametrize("command", ["--help", "runs"])
def test_help_and_listing_import_no_heavy_library(tmp_path, command):
    """`cockpit --help` and `cockpit runs` answer at once: no pydantic models built, no torch, no textual."""
    done = subprocess.run([sys.executable, "-c", LISTING, str(tmp_path), command], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip().endswith("HEAVY []"), done.stdout[-500:] + done.stderr[-2000:]
