"""Promotion gates: rules on a stage's metrics, absolute or against earlier stages."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.config import GateSpec, Rule

POLICIES = ("rules", "approve", "reject")


@dataclass(frozen=True)
class RuleCheck:
    """One rule checked against the measured value."""

    metric: str
    rule: str
    value: float | None
    threshold: float | None
    passed: bool
    reference: str | None = None


@dataclass(frozen=True)
class GateReport:
    """Everything an operator needs to decide a gate."""

    stage: str
    approval: str
    rules: list[RuleCheck]
    history: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "approval": self.approval, "passed": self.passed,
                "rules": [asdict(r) for r in self.rules], "history": self.history}


def evaluate_gate(gate: GateSpec, stage: str, metrics: dict[str, dict[str, float]]) -> GateReport:
    """Check `gate` for `stage`; `metrics` maps each finished stage (this one included) to its metrics."""
    mine = metrics.get(stage, {})
    checks: list[RuleCheck] = []
    for metric, rule in gate.require.items():
        checks += _check_rule(metric, rule, mine.get(metric), metrics)
    history = {m: {s: v[m] for s, v in metrics.items() if m in v} for m in gate.require}
    return GateReport(stage, gate.approval, checks, history)


def _check_rule(metric: str, rule: Rule, value: float | None, metrics: dict) -> list[RuleCheck]:
    bounds = [(">=", rule.min, None), ("<=", rule.max, None)]
    for op, ref, sign in ((">=", rule.min_of, -1), ("<=", rule.max_of, +1)):
        if ref is not None:
            ref_value = metrics.get(ref, {}).get(metric)
            threshold = None if ref_value is None else ref_value + sign * rule.tolerance
            bounds.append((op, threshold, (ref, sign)))
    checks = []
    for op, threshold, ref in bounds:
        if threshold is None and ref is None:
            continue
        text = f"{op} {threshold:g}" if ref is None else _relative_text(op, ref, rule.tolerance)
        passed = value is not None and threshold is not None and (
            value >= threshold if op == ">=" else value <= threshold)
        checks.append(RuleCheck(metric, text, value, threshold, passed, ref[0] if ref else None))
    return checks


def _relative_text(op: str, ref: tuple, tolerance: float) -> str:
    name, sign = ref
    slack = f" {'+' if sign > 0 else '-'} {tolerance:g}" if tolerance else ""
    return f"{op} {name}{slack}"


def policy_decision(report: GateReport, policy: str) -> str:
    """What a --gate-policy decides for a manual gate: approve or reject."""
    if policy == "approve":
        return "approve"
    if policy == "reject":
        return "reject"
    return "approve" if report.passed else "reject"
