"""Gates: absolute rules, no-regression and rise rules against earlier stages, manual decisions by policy."""
import signal

import pytest
from pydantic import ValidationError

from core.config import Curriculum, GateSpec, Rule
from core.config_load import load_curriculum
from core.errors import ConfigError
from core.events import EventKind
from core.gates import evaluate_gate, policy_decision
from core.runs import create_run
from core.store import RunStore
from core.supervisor import Supervisor


def gate(require, approval="auto"):
    return GateSpec.model_validate({"require": require, "approval": approval})


def test_absolute_min_and_max():
    g = gate({"eval/accuracy": {"min": 0.5}, "eval/perplexity": {"max": 4.0}})
    ok = evaluate_gate(g, "s", {"s": {"eval/accuracy": 0.6, "eval/perplexity": 3.0}})
    bad = evaluate_gate(g, "s", {"s": {"eval/accuracy": 0.4, "eval/perplexity": 3.0}})
    assert ok.passed and not bad.passed
    assert [(r.metric, r.rule, r.passed) for r in bad.rules] == [("eval/accuracy", ">= 0.5", False),
                                                                 ("eval/perplexity", "<= 4", True)]


def test_relative_rule_with_tolerance_and_history():
    g = gate({"eval/accuracy": {"min_of": "sft", "tolerance": 0.02}})
    metrics = {"sft": {"eval/accuracy": 0.90}, "grpo": {"eval/accuracy": 0.885}}
    report = evaluate_gate(g, "grpo", metrics)
    assert report.passed
    assert report.rules[0].rule == ">= sft - 0.02" and report.rules[0].reference == "sft"
    assert report.history == {"eval/accuracy": {"sft": 0.90, "grpo": 0.885}}
    metrics["grpo"]["eval/accuracy"] = 0.87
    assert not evaluate_gate(g, "grpo", metrics).passed


def test_max_of_and_missing_values_fail():
    g = gate({"eval/perplexity": {"max_of": "a"}})
    assert evaluate_gate(g, "b", {"a": {"eval/perplexity": 3.0}, "b": {"eval/perplexity": 2.9}}).passed
    assert not evaluate_gate(g, "b", {"a": {"eval/perplexity": 3.0}, "b": {}}).passed
    assert not evaluate_gate(g, "b", {"a": {}, "b": {"eval/perplexity": 1.0}}).passed


def test_policies_decide_manual_gates():
    g = gate({"eval/accuracy": {"min": 0.5}}, approval="manual")
    failing = evaluate_gate(g, "s", {"s": {"eval/accuracy": 0.1}})
    passing = evaluate_gate(g, "s", {"s": {"eval/accuracy": 0.9}})
    assert policy_decision(failing, "rules") == "reject" and policy_decision(passing, "rules") == "approve"
    assert policy_decision(failing, "approve") == "approve"
    assert policy_decision(passing, "reject") == "reject"


def test_min_of_with_gain_demands_a_rise():
    g = gate({"eval/accuracy": {"min_of": "sft", "gain": 0.05}})
    rose = evaluate_gate(g, "grpo", {"sft": {"eval/accuracy": 0.90}, "grpo": {"eval/accuracy": 0.96}})
    check = rose.rules[0]
    assert rose.passed and check.rule == ">= sft + 0.05" and check.reference == "sft"
    assert check.threshold == pytest.approx(0.95)
    assert not evaluate_gate(g, "grpo", {"sft": {"eval/accuracy": 0.90}, "grpo": {"eval/accuracy": 0.93}}).passed
    assert not evaluate_gate(g, "grpo", {"sft": {}, "grpo": {"eval/accuracy": 0.99}}).passed  # nothing to rise from


def test_max_of_with_gain_demands_a_fall():
    g = gate({"eval/perplexity": {"max_of": "a", "gain": 0.5}})
    fell = evaluate_gate(g, "b", {"a": {"eval/perplexity": 3.0}, "b": {"eval/perplexity": 2.4}})
    assert fell.passed and fell.rules[0].rule == "<= a - 0.5"
    assert fell.rules[0].threshold == pytest.approx(2.5)
    assert not evaluate_gate(g, "b", {"a": {"eval/perplexity": 3.0}, "b": {"eval/perplexity": 2.7}}).passed


def test_max_of_tolerance_allows_a_little_rise():
    g = gate({"eval/perplexity": {"max_of": "a", "tolerance": 0.1}})
    report = evaluate_gate(g, "b", {"a": {"eval/perplexity": 3.0}, "b": {"eval/perplexity": 3.05}})
    assert report.passed and report.rules[0].rule == "<= a + 0.1"


@pytest.mark.parametrize("rule, words", [
    ({"min_of": "sft", "gain": 0.01, "tolerance": 0.02}, "gain and tolerance"),
    ({"min": 0.5, "gain": 0.01}, "needs min_of or max_of"),
    ({"min_of": "sft", "gain": -0.01}, "greater than or equal to 0"),
])
def test_inconsistent_gain_is_rejected(rule, words):
    with pytest.raises(ValidationError, match=words):
        Rule.model_validate(rule)


def test_gain_with_tolerance_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat'}\n"
                    "  - {name: b, kind: dpo, data: 'builtin:arithmetic-preference',\n"
                    "     gate: {require: {eval/accuracy: {min_of: a, gain: 0.01, tolerance: 0.02}}}}\n")
    with pytest.raises(ConfigError, match="gain and tolerance") as info:
        load_curriculum(path)
    assert f"{path}:5" in str(info.value)


@pytest.fixture
def signal_handlers():
    """The supervisor installs its own SIGTERM/SIGINT/SIGHUP handlers: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("accuracy, decision, stage_status, run_status", [
    (0.95, "approve", "passed", "completed"), (0.5, "reject", "gate_failed", "gate_failed")])
def test_an_auto_gate_records_the_rules_decision_as_approve_or_reject(tmp_path, signal_handlers, accuracy, decision,
                                                                      stage_status, run_status):
    cur = Curriculum.model_validate({"name": "g", "model": {"base": "builtin:tiny-qwen3"}, "stages": [
        {"name": "final", "kind": "merge", "gate": {"require": {"eval/accuracy": {"min": 0.9}}}}]})
    paths = create_run(cur, tmp_path / "g.yaml", tmp_path)
    paths.stage_final("final").mkdir(parents=True)  # trained before a supervisor died: only the gate is left
    with RunStore(paths.db) as store:
        store.update_stage("final", status="gate_pending")
        store.append(EventKind.EVAL_RESULT, stage="final", name="eval/accuracy", value=accuracy, now=True)
    assert Supervisor(paths).run() == run_status
    with RunStore(paths.db) as store:
        decided = store.events(kinds=[EventKind.GATE_DECIDED])[0].data
        assert (decided["decision"], decided["by"]) == (decision, "rules")
        assert store.stage("final")["status"] == stage_status


OVERRIDDEN = """
name: override
defaults: {train: {steps: 2, batch_size: 4, max_length: 48, logging_steps: 1}}
stages:
  - name: pretrain
    kind: pretrain
    data: "builtin:arithmetic-text"
    lora: false
    eval: {max_samples: 8, metrics: [perplexity]}
    gate: {require: {eval/perplexity: {max: 1.0}}}   # two steps never get there: the rules reject
  - {name: sft, kind: sft, data: "builtin:arithmetic-chat", eval: false}
"""


def test_an_operator_overrides_a_failed_gate_with_a_note_and_the_run_goes_on(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    config, runs = tmp_path / "o.yaml", tmp_path / "runs"
    config.write_text(OVERRIDDEN)

    def cockpit(*args):
        return subprocess.run([sys.executable, "-m", "cli.main", *args, "--runs-dir", str(runs)], cwd=root,
                              capture_output=True, text=True, timeout=300)

    assert cockpit("run", str(config), "--batch").returncode == 3
    refused = cockpit("gate", "latest", "pretrain", "approve")
    assert refused.returncode == 2 and "needs --note" in refused.stderr
    assert cockpit("gate", "latest", "pretrain", "reject", "--note", "no").returncode == 2
    done = cockpit("gate", "latest", "pretrain", "approve", "--note", "perplexity bar is for the real model")
    assert done.returncode == 0 and "cockpit resume" in done.stdout
    resumed = cockpit("resume", "latest", "--batch")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "gate overridden: approve by cli:" in resumed.stdout and "sft: started" in resumed.stdout
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    with RunStore(run / "run.db") as store:
        decided = store.events(kinds=[EventKind.GATE_DECIDED], stage="pretrain")
        statuses = [s["status"] for s in store.stages()]
        started = store.events(kinds=[EventKind.STAGE_STARTED], stage="pretrain")
    assert [d.data["decision"] for d in decided] == ["reject", "approve"] and decided[-1].data["override"]
    assert decided[-1].data["note"] == "perplexity bar is for the real model"
    assert statuses == ["passed", "completed"] and len(started) == 1  # pretrain was not trained again
