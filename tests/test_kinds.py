"""The stage-kind registry is the one place a kind is declared: every kind has a worker, every worker a kind."""
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import StageSpec
from core.kinds import KIND_NAMES, KINDS, PROMPT_ROWS, data_rows
import workers.stages

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_kind_has_a_worker_module_with_main(kind):
    module = importlib.import_module(KINDS[kind].worker)
    assert callable(module.main)


def test_every_worker_module_has_a_kind():
    modules = {f"workers.stages.{m.name}" for m in pkgutil.iter_modules(workers.stages.__path__)}
    assert modules == {k.worker for k in KINDS.values()}


def test_the_config_accepts_exactly_the_registered_kinds():
    for kind in KIND_NAMES:
        assert StageSpec.model_validate({"name": "s", "kind": kind}).kind == kind
    with pytest.raises(ValueError, match="ppo"):
        StageSpec.model_validate({"name": "s", "kind": "ppo"})


def test_a_kind_that_reads_data_demands_it_and_on_policy_stages_read_prompts():
    assert all(KINDS[k].rows for k in ("pretrain", "sft", "dpo", "grpo"))
    assert not KINDS["merge"].rows and not KINDS["eval"].rows
    assert data_rows("dpo", on_policy=True) == PROMPT_ROWS
    assert "chosen" in data_rows("dpo", on_policy=False)


def test_a_worker_module_runs_by_the_name_the_registry_gives():
    done = subprocess.run([sys.executable, "-m", KINDS["eval"].worker], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "usage: python -m workers.stages.<kind>" in done.stderr
