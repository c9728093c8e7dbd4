"""Promotion gates: rules on a stage's metrics, absolute or against earlier stages (no regression, or a rise)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from core.events import Decision, GatePendingData

if TYPE_CHECKING:
    from core.config import GateSpec, Rule


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

    @property
    def decision(self) -> Decision:
        """What the rules decide: approve when every rule holds."""
        return Decision.APPROVE if self.passed else Decision.REJECT

    def pending_data(self) -> GatePendingData:
        """The `gate_pending` event's data."""
        return {"approval": self.approval, "passed": self.passed, "rules": [asdict(r) for r in self.rules],
                "history": self.history}


def evaluate_gate(gate: GateSpec, stage: str, metrics: dict[str, dict[str, float]]) -> GateReport:
    """Check `gate` for `stage`; `metrics` maps each finished stage (this one included) to its metrics."""
    mine = metrics.get(stage, {})
    checks: list[RuleCheck] = []
    for metric, rule in gate.require.items():
        checks += _check_rule(metric, rule, mine.get(metric), metrics)
    history = {m: {s: v[m] for s, v in metrics.items() if m in v} for m in gate.require}
    return GateReport(stage, gate.approval, checks, history)


@dataclass(frozen=True)
class Bound:
    """One bound a rule sets: `op` is '>=' or '<='; `threshold` is None while the reference is unmeasured."""

    op: str
    threshold: float | None
    text: str
    reference: str | None = None

    def holds(self, value: float | None) -> bool:
        """True when `value` was measured and lies on the right side of a known threshold."""
        if value is None or self.threshold is None:
            return False
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


def rule_bounds(rule: Rule, metric: str, metrics: dict[str, dict[str, float]]) -> list[Bound]:
    """Every bound `rule` sets on `metric`; relative ones read the reference stage's value from `metrics`."""
    bounds = [Bound(op, float(v), f"{op} {v:g}") for op, v in ((">=", rule.min), ("<=", rule.max)) if v is not None]
    for op, key, sign in ((">=", "min_of", +1), ("<=", "max_of", -1)):
        bounds += [_relative(op, ref, sign * (rule.gain - rule.tolerance), metrics.get(ref, {}).get(metric))
                   for ref in rule.references(key)]
    return bounds


def _relative(op: str, ref: str, offset: float, ref_value: float | None) -> Bound:
    """A bound at the reference stage's value moved by `offset` (a demanded gain or an allowed slack)."""
    shift = f" {'+' if offset > 0 else '-'} {abs(offset):g}" if offset else ""
    return Bound(op, None if ref_value is None else ref_value + offset, f"{op} {ref}{shift}", ref)


def _check_rule(metric: str, rule: Rule, value: float | None, metrics: dict) -> list[RuleCheck]:
    """One check per bound of `rule`, against the measured `value`."""
    return [RuleCheck(metric, b.text, value, b.threshold, b.holds(value), b.reference)
            for b in rule_bounds(rule, metric, metrics)]


def policy_decision(report: GateReport, policy: str) -> Decision:
    """What a --gate-policy decides for a manual gate: what the rules say, or always approve / reject."""
    return report.decision if policy == "rules" else Decision(policy)
