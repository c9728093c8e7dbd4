"""Gates: absolute rules, no-regression rules against earlier stages, manual decisions by policy."""
from core.config import GateSpec
from core.gates import evaluate_gate, policy_decision


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
