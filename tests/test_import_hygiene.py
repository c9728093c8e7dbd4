"""The headless paths know no screen: core/ and workers/ never import textual, workers never import tui."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import importlib, pkgutil, sys
import core, workers
for pkg in (core, workers):
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
import tui.cli
from tui.cli import build_parser
build_parser().parse_args(["run", "--batch"])
bad = sorted(m for m in sys.modules if m.split(".")[0] == "textual" or m.startswith("tui.") and m != "tui.cli")
print("BAD", bad)
"""


def test_core_workers_and_the_batch_cli_never_import_textual():
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("BAD []"), done.stdout
