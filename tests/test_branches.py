"""`from: base`: a stage that starts from the model the curriculum starts from, beside the first (a branch)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.config_load import load_curriculum
from core.dag import Holds, tree_rows
from core.errors import ConfigError
from conftest import run_batch
from test_parallel import assert_ran_side_by_side

ROOT = Path(__file__).resolve().parents[1]
TWO_BRANCHES = """
name: branches
defaults: {train: {steps: 3, batch_size: 4, max_length: 48, logging_steps: 1}}
stages:
  - {name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}
  - {name: chat, kind: sft, from: base, data: "builtin:arithmetic-chat", lora: false, eval: false}
"""


def test_a_branch_from_base_trains_on_the_base_not_on_the_stage_before(tmp_path):
    config = tmp_path / "b.yaml"
    config.write_text(TWO_BRANCHES)
    assert [s.from_ for s in load_curriculum(config).stages] == [None, "base"]
    run = run_batch(config)
    spec = json.loads((run / "stages" / "chat" / "spec.json").read_text())
    assert spec["input_model"] is None  # model.base, not text's output
    text, chat = (load_file(run / "stages" / s / "final" / "model.safetensors") for s in ("text", "chat"))
    base = load_file(run / "base" / "model.safetensors")
    # both trained from the same base: each moved away from it, and not the same way
    assert any(not (chat[k] == base[k]).all() for k in base) and any(not (text[k] == chat[k]).all() for k in base)


@pytest.mark.parametrize("stage, words", [
    ("{name: m, kind: merge, from: base}", "a merge stage needs a trained stage to start from, not base"),
    ("{name: base, kind: sft, data: 'builtin:arithmetic-chat'}", "'base' names the model a curriculum starts from"),
])
def test_base_is_a_starting_point_not_a_stage(tmp_path, stage, words):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\nstages:\n  - {{name: p, kind: pretrain, data: 'builtin:arithmetic-text'}}\n  - {stage}\n")
    with pytest.raises(ConfigError, match=words):
        load_curriculum(path)


def test_a_stage_after_an_eval_stage_starts_from_what_that_one_evaluated(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("name: e\nstages:\n  - {name: untrained, kind: eval}\n"
                    "  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    "  - {name: check, kind: eval}\n  - {name: s, kind: sft, data: 'builtin:arithmetic-chat'}\n")
    assert [s.from_ for s in load_curriculum(path).stages] == [None, None, "p", "p"]
    path.write_text(path.read_text().replace("kind: sft,", "kind: sft, from: check,"))
    with pytest.raises(ConfigError, match="'check' writes no model to start from \\(it only evaluates or routes\\)"):
        load_curriculum(path)


TREE = """
name: tree
parallel: 2
defaults:
  train: {steps: 2, batch_size: 4, max_length: 48, logging_steps: 1}
  eval: {max_samples: 4, metrics: [accuracy]}
stages:
  - {name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}
  - {name: strict, kind: sft, data: "builtin:arithmetic-chat", gate: {require: {eval/accuracy: {min: 0.99}}}}
  - {name: polish, kind: sft, from: strict, data: "builtin:arithmetic-chat", eval: false}
  - {name: loose, kind: sft, from: text, data: "builtin:arithmetic-chat", eval: false}
"""


def test_a_failed_branch_holds_back_only_what_starts_from_it(tmp_path):
    """With `parallel: 2`, text first (both branches read it), then strict and loose side by side, each on
    half the cores. strict's gate cannot pass after two steps: polish (built on it) is skipped, loose
    trains, and the run's exit code still says a gate failed."""
    config = tmp_path / "tree.yaml"
    config.write_text(TREE)
    run = run_batch(config, expect=3)
    assert_ran_side_by_side(run, first="text", together=("strict", "loose"))
    shown = subprocess.run([sys.executable, "-m", "cli.main", "show", run.name, "--json", "--runs-dir", str(run.parent)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    summary = json.loads(shown.stdout)
    stages = {s["name"]: s for s in summary["stages"]}
    assert summary["status"] == "gate_failed"
    assert {n: s["status"] for n, s in stages.items()} == {
        "text": "completed", "strict": "gate_failed", "polish": "skipped", "loose": "completed"}
    assert stages["polish"]["reason"] == "held back: strict gate failed"
    assert (run / "stages" / "loose" / "final").exists() and not (run / "stages" / "polish" / "final").exists()
    table = subprocess.run([sys.executable, "-m", "cli.main", "show", run.name, "--runs-dir", str(run.parent)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for drawn in ("│ text     │", "│ ├╴strict │", "│ │ polish │", "│ └╴loose  │"):  # polish hangs under strict
        assert drawn in table, table


def _drawn(stages):
    return [row.prefix + stages[row.index][0] for row in tree_rows(stages)]


def test_a_tree_is_drawn_flat_until_it_branches():
    assert _drawn([("a", None, True), ("b", "a", True), ("final", "b", False)]) == ["a", "b", "final"]
    assert _drawn([("text", None, True), ("chat", "base", True)]) == ["├╴text", "└╴chat"]
    experts = [("pre", None, True), ("add", "pre", True), ("add2", "add", True), ("mul", "pre", True),
               ("check", "pre", False), ("sub", "pre", True), ("x", "sub", True)]
    assert _drawn(experts) == ["pre", "├╴add", "│ add2", "├╴mul", "├╴check", "└╴sub", "  x"]
    # an evaluation read from a stage in a straight line is drawn before the line goes on
    assert _drawn([("t", None, True), ("d", "t", True), ("e", "t", False)]) == ["t", "e", "d"]


def test_an_eval_stage_that_fails_holds_back_what_starts_from_the_stage_it_read(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("name: h\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    "  - {name: check, kind: eval}\n  - {name: s, kind: sft, data: 'builtin:arithmetic-chat'}\n"
                    "  - {name: side, kind: sft, from: base, data: 'builtin:arithmetic-chat'}\n")
    p, check, s, side = load_curriculum(path).stages
    holds = Holds()
    assert holds.held(check) is None
    holds.ended_badly(check, "gate_failed")
    assert holds.held(s) == "check gate failed" and holds.held(side) is None
