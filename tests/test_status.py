"""`cockpit show`: each stage's eval metrics against its parent stage, in the summary and the table."""
import io
import json

import pytest
from rich.console import Console

from cli.tables import run_report
from core.runs import RunPaths
from core.status import summarize, verdict
from core.store import RunStore

STAGES = [{"name": "pretrain", "kind": "pretrain"}, {"name": "sft", "kind": "sft", "from": "pretrain"},
          {"name": "dpo", "kind": "dpo", "from": "sft"}, {"name": "grpo", "kind": "grpo", "from": "dpo"},
          {"name": "final", "kind": "merge", "from": "grpo"}]
EVALS = [("pretrain", "text", 0.004, 2.7), ("sft", "chat", 0.90, 1.9), ("dpo", "chat", 0.912, 1.8),
         ("grpo", "chat", 0.908, 2.0)]


@pytest.fixture
def run(tmp_path) -> RunPaths:
    paths = RunPaths(tmp_path / "r")
    paths.root.mkdir()
    with RunStore.create(paths.db, {"id": "r", "status": "completed"}, STAGES) as store:
        for stage, fmt, acc, ppl in EVALS:
            store.append("eval_result", stage=stage, name="eval/accuracy", value=acc, now=True, format=fmt)
            store.append("eval_result", stage=stage, name="eval/perplexity", value=ppl, now=True, format=fmt)
    return paths


def test_summary_has_deltas_against_the_parent_only_when_comparable(run):
    stages = {s["name"]: s for s in json.loads(json.dumps(summarize(run)))["stages"]}  # as --json prints it
    assert stages["pretrain"]["delta"] == {} and stages["pretrain"]["delta_skipped"] == {}  # no parent
    assert stages["sft"]["delta"] == {}  # text vs chat: not comparable
    assert stages["sft"]["delta_skipped"]["eval/accuracy"] == "pretrain measured it as text, sft as chat"
    assert stages["dpo"]["delta"] == pytest.approx({"eval/accuracy": 0.012, "eval/perplexity": -0.1})
    assert stages["grpo"]["delta"]["eval/accuracy"] == pytest.approx(-0.004)
    assert stages["final"]["delta"] == {} and stages["final"]["delta_skipped"] == {}  # no eval of its own


def test_a_missing_format_counts_as_comparable(tmp_path):
    paths = RunPaths(tmp_path / "r")
    paths.root.mkdir()
    with RunStore.create(paths.db, {"id": "r"}, STAGES[:2]) as store:
        store.append("eval_result", stage="pretrain", name="eval/accuracy", value=0.5, now=True)
        store.append("eval_result", stage="sft", name="eval/accuracy", value=0.75, now=True, format="chat")
    sft = summarize(paths)["stages"][1]
    assert sft["delta"] == {"eval/accuracy": 0.25} and sft["delta_skipped"] == {}


def test_show_table_has_a_coloured_delta_column(run):
    out = io.StringIO()
    run_report(summarize(run), Console(file=out, width=200, force_terminal=True, color_system="standard"))
    text = out.getvalue()
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    assert "Δ acc" in text
    assert "\x1b[32m+1.2 pt" in rows["dpo"] and "\x1b[31m-0.4 pt" in rows["grpo"]  # green rise, red fall
    assert "n/c" in rows["sft"] and "sft Δ acc n/c: pretrain measured it as text, sft as chat" in text
    assert rows["pretrain"].split("│")[9].strip() == "-"


def test_verdict_knows_which_way_is_better():
    assert verdict("eval/accuracy", 0.01) == "better" and verdict("eval/accuracy", -0.01) == "worse"
    assert verdict("eval/perplexity", -0.3) == "better" and verdict("loss", 0.2) == "worse"
    assert verdict("eval/accuracy", 0.0) == "same"
