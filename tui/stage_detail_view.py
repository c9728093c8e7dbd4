"""How the stage detail reads on screen: its sections (summary, failure, gate, metrics, settings, checkpoints,
attempts) as rich renderables from a `StageDetail` (core/stage_detail.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from core.events import RULES, STAGE_ENDED_BADLY, STAGE_OK, StageStatus, approves
from core.kinds import KINDS
from core.stage_detail import GateFacts, StageDetail
from core.status import delta_text, verdict
from core.units import duration
from tui.format import elapsed_stamp, short_number, status_look

LABEL_WIDTH = 10        # "on-policy"


@dataclass(frozen=True)
class Palette:
    """Colours for the detail (the app's theme when shown; plain names in tests without an app)."""

    good: str = "green"
    bad: str = "red"
    warn: str = "yellow"
    accent: str = "cyan"
    muted: str = "dim"


def palette_of(variables: dict[str, str]) -> Palette:
    return Palette(variables.get("success", "green"), variables.get("error", "red"),
                   variables.get("warning", "yellow"), variables.get("accent", "cyan"))


def detail_renderable(d: StageDetail, look: Palette = Palette()) -> RenderableType:
    """The whole detail: a summary, then failure, gate, metrics, settings, checkpoints, attempts."""
    parts: list[RenderableType] = [summary_text(d, look)]
    if d.status in STAGE_ENDED_BADLY:
        parts += [Text(""), *failure_section(d, look)]
    parts += [Text(""), *gate_section(d, look), Text(""), *metrics_section(d, look), Text(""),
              *settings_section(d, look), Text(""), *checkpoints_section(d, look), Text(""), *attempts_section(d, look)]
    return Group(*parts)


def _title(text: str, look: Palette, extra: str = "", style: str | None = None) -> Text:
    title = Text()
    title.append(text, f"bold {style or look.accent}")
    if extra:
        title.append("  ")
        title.append_text(Text.from_markup(extra))
    return title


def _indent(renderable: RenderableType) -> Table:
    """`renderable` two cells in, wrapping within what is left."""
    grid = Table.grid(expand=True)
    grid.add_column(width=2)
    grid.add_column(ratio=1, overflow="fold")
    grid.add_row("", renderable)
    return grid


def summary_text(d: StageDetail, look: Palette) -> Text:
    """One line: steps, attempts, timing, origin (the header line above says the status)."""
    facts = []
    if d.status == StageStatus.WAITING:
        facts.append("not started yet")
    elif d.total_steps:
        facts.append(f"{d.last_step or 0}/{d.total_steps} steps")
    if d.attempt > 1:
        facts.append(f"{d.attempt} attempts")
    if d.started_at is not None:
        started = f"started {elapsed_stamp(d.started_at, d.created_at)}"
        if d.finished_at is not None:
            started += f", ran {duration(d.finished_at - d.started_at)}"
        facts.append(started)
    facts.append(f"from {d.parent}" if d.parent else "from the base model")
    return Text(" · ".join(facts))


def failure_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    """Why the stage ended badly, in full: the recorded reason, the worker's exception, where to read more."""
    title = "Failure" if d.status == StageStatus.FAILED else "Reason"
    body: list[RenderableType] = []
    reason, full = (d.reason or "").strip(), d.failure
    if full and full.startswith(reason):  # the stage's reason is the exception's first line, cut: show it all
        body.append(Text(full, look.bad))
    elif reason:
        body.append(Text(reason, look.bad))
        if full and full not in reason:
            body += [Text("the worker's exception:", look.muted), Text(full, look.bad)]
    if not body:
        body.append(Text("no reason recorded", look.muted))
    where = []
    if d.failure_step is not None:
        where.append(f"at step {d.failure_step}")
    if d.exit_code:
        where.append(f"exit code {d.exit_code}")
    if d.status == StageStatus.FAILED:
        where.append(f"worker log: {d.log}")
    if where:
        body.append(Text(" · ".join(where), look.muted))
    return [_title(title, look, style=look.bad), _indent(Group(*body))]


def gate_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    gate = d.gate
    if gate is None:
        return [_title("Gate", look, "[dim]none: the stage ends when its worker does[/]")]
    out: list[RenderableType] = [_title("Gate", look, f"{escape(gate.approval)} approval")]
    if gate.rules:
        out.append(_indent(rules_table(gate, look)))
    else:
        out.append(_indent(Text("no rules: the decision is the operator's alone", look.muted)))
    out.append(_indent(_decision_text(d, gate, look)))
    return out


def rules_table(gate: GateFacts, look: Palette) -> Table:
    """Metric, rule, measured value, threshold (with the reference stage's value), pass/fail."""
    table = Table.grid(padding=(0, 2))
    for name, justify in (("metric", "left"), ("rule", "left"), ("measured", "right"), ("threshold", "right"),
                          ("", "left")):
        table.add_column(name, justify=justify)
    table.add_row(*(Text(h, "bold") for h in ("metric", "rule", "measured", "threshold", "result")))
    for r in gate.rules:
        if r.passed is None:
            mark = Text("–", look.muted)
        else:
            mark = Text("✓ pass", f"bold {look.good}") if r.passed else Text("✗ fail", f"bold {look.bad}")
        threshold = short_number(r.threshold) if r.threshold is not None or not r.reference else "?"
        table.add_row(Text(r.metric), Text(r.rule), short_number(r.value), threshold, mark)
        if r.reference:  # a relative rule: what the reference stage measured
            seen = short_number(r.reference_value) if r.reference_value is not None else "not measured yet"
            table.add_row("", Text(f"{r.reference} = {seen}", look.muted), "", "", "")
    return table


def _decision_text(d: StageDetail, gate: GateFacts, look: Palette) -> Text:
    if gate.decision is not None:
        ok = approves(gate.decision)
        text = Text()
        text.append("✓ " if ok else "✗ ", f"bold {look.good if ok else look.bad}")
        text.append(f"{'approved' if ok else 'rejected'} by {_who(gate.by)}", "bold")
        if gate.decided_at is not None:
            text.append(f" at {elapsed_stamp(gate.decided_at, d.created_at)}")
        if gate.note:
            text.append(f" — “{gate.note}”")
        return text
    if gate.sent is not None:
        decision, by, note = gate.sent
        return Text(f"{decision} sent by {by}{' — “' + note + '”' if note else ''}; waiting for the supervisor",
                    look.warn)
    if gate.reached:
        verdict_text = "the rules pass" if gate.passed else "some rules fail"
        if gate.approval == "manual":
            return Text(f"waiting for a decision ({verdict_text}): g on the run screen", f"bold {look.warn}")
        return Text(f"being decided by its rules ({verdict_text})", look.warn)
    if d.status in STAGE_ENDED_BADLY:
        return Text(f"not reached: the stage {status_look(d.status)[1]}", look.muted)
    if d.status in STAGE_OK:
        return Text("no check of this gate is recorded", look.muted)
    return Text("reached when the stage ends", look.muted)


def _who(by: str | None) -> str:
    if by == RULES:
        return "its rules"
    if by and by.startswith("policy:"):
        return f"--gate-policy {by.split(':', 1)[1]}"
    return by or "?"


def metrics_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    """Eval results against the parent stage, then the last value of every training metric, by family."""
    step = f"[dim]training last logged at step {d.last_step}[/]" if d.last_step is not None else ""
    groups = metric_groups(d.training)
    grid = _grid(look, max([len(label) for label, _ in groups] + [LABEL_WIDTH]))
    if d.evals:
        reasons = dict.fromkeys(reason for _, reason in d.not_comparable)
        why = [Text(f"n/c: {reason}", look.muted) for reason in reasons] if len(reasons) == 1 else \
            [Text(f"n/c {metric}: {reason}", look.muted) for metric, reason in d.not_comparable]
        grid.add_row("eval", Group(evals_table(d, look), *why))
    elif d.status in (StageStatus.WAITING, StageStatus.RUNNING):
        grid.add_row("eval", Text("measured when the stage ends" if _evaluates(d) else "none configured", look.muted))
    else:
        grid.add_row("eval", Text("no results" if _evaluates(d) else "none configured", look.muted))
    for label, items in groups:
        cells = [Text.assemble((name, look.muted), " ", short_number(value)) for name, value in items]
        grid.add_row(Text(label), Columns(cells, padding=(0, 2)))
    if not groups and KINDS.get(d.kind) is not None and KINDS[d.kind].trains:
        grid.add_row("training", Text("nothing logged yet", look.muted))
    return [_title("Metrics", look, step), _indent(grid)]


def metric_groups(training: tuple[tuple[str, float], ...]) -> list[tuple[str, list[tuple[str, float]]]]:
    """Training metrics by family: the plain ones (headline first) as "training", then "completions/" etc."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for name, value in training:
        family, _, rest = name.partition("/")
        if rest:
            label, short = f"{family}/", rest
        elif name.startswith("train_"):  # the trainer's summary of the whole run (train_loss, train_runtime)
            label, short = "run totals", name.removeprefix("train_")
        else:
            label, short = "training", name
        groups.setdefault(label, []).append((short, value))
    return sorted(groups.items(), key=lambda g: (g[0] != "training", g[0] != "run totals", g[0]))


def _grid(look: Palette, label_width: int = LABEL_WIDTH) -> Table:
    """Two columns: a dim label, and a value that wraps under itself."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(width=min(label_width, 14), no_wrap=True, style=look.muted)
    grid.add_column(ratio=1, overflow="fold")
    return grid


def evals_table(d: StageDetail, look: Palette) -> Table:
    """Each eval metric: the parent's value, this stage's, and the change (coloured better/worse; n/c)."""
    parent = dict(d.parent_evals)
    deltas, skipped = dict(d.deltas), dict(d.not_comparable)
    table = Table.grid(padding=(0, 2))
    table.add_column()
    if d.parent:
        table.add_column(justify="right")
    table.add_column(justify="right")
    if d.parent:
        table.add_column(justify="right")
    head = ["metric"] + ([d.parent[:12]] if d.parent else []) + [d.name[:12]] + (["change"] if d.parent else [])
    table.add_row(*(Text(h, "bold") for h in head))  # Text cells: names from the store are never markup
    for metric, value in d.evals:
        cells: list[Any] = [Text(metric)]
        if d.parent:
            cells.append(short_number(parent.get(metric)))
        cells.append(Text(short_number(value), "bold"))
        if d.parent:
            if metric in deltas:
                change = deltas[metric]
                look_of = {"better": look.good, "worse": look.bad}.get(verdict(metric, change), "")
                cells.append(Text(delta_text(metric, change), look_of))
            elif metric in skipped:
                cells.append(Text("n/c", look.muted))
            else:
                cells.append(Text("-", look.muted))
        table.add_row(*cells)
    return table


def _evaluates(d: StageDetail) -> bool:
    kind = KINDS.get(d.kind)
    return bool(d.spec.get("eval")) or bool(kind and kind.always_evaluates and d.spec.get("eval") is not False)


def settings_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    rows = settings_rows(d)
    grid = _grid(look)
    for label, value in rows:
        grid.add_row(label, Text(value))
    return [_title("Settings", look, "[dim]as resolved for this run[/]"), _indent(grid)]


def settings_rows(d: StageDetail) -> list[tuple[str, str]]:
    """(label, value) for each setting the stage's kind reads."""
    spec, kind = d.spec, KINDS.get(d.kind)
    if not spec:
        return [("config", "not in the run's config")]
    rows = [("kind", f"{d.kind} — {kind.summary}" if kind else d.kind),
            ("from", d.parent or f"model.base: {d.base_model}")]
    if kind is None or kind.rows or spec.get("data"):
        rows.append(("data", _data_text(spec.get("data"))))
    train = spec.get("train") or {}
    if kind is None or kind.trains:
        rows.append(("train", _train_text(train)))
        rows.append(("weights", _lora_text(spec.get("lora"))))
        more = _trainer_extras(d.kind, train)
        if more:
            rows.append(("trainer", more))
    if kind is not None:
        for option in kind.options:
            text = _option_text(option, spec.get(option), spec)
            if text:
                rows.append((OPTION_LABELS.get(option, option), text))
    rows.append(("eval", _eval_text(spec.get("eval"), kind)))
    extra = spec.get("trl")
    if extra:
        rows.append(("trl", ", ".join(f"{k}={_plain(v)}" for k, v in extra.items())))
    return rows


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _data_text(data: Any) -> str:
    if data is None:
        return "none"
    if isinstance(data, dict):
        extras = [f"limit {data['limit']}"] if data.get("limit") else []
        if data.get("on_error") and data.get("on_error") != "fail":
            extras.append(f"on_error {data['on_error']}")
        return str(data.get("source")) + (f" ({', '.join(extras)})" if extras else "")
    return str(data)


def _train_text(t: dict) -> str:
    if not t:
        return "defaults"
    accum = f" × accum {t['grad_accum']}" if (t.get("grad_accum") or 1) > 1 else ""
    nproc = f" × {t['nproc']} processes" if (t.get("nproc") or 1) > 1 else ""
    parts = [f"{t.get('steps', '?')} steps × batch {t.get('batch_size', '?')}{accum}{nproc}",
             f"lr {_num(t.get('lr'))}" + (f" ({t['scheduler']})" if t.get("scheduler") else "")]
    if t.get("warmup_steps"):
        parts.append(f"warmup {t['warmup_steps']}")
    if t.get("weight_decay"):
        parts.append(f"weight decay {_num(t['weight_decay'])}")
    parts.append(f"max length {t.get('max_length', '?')}")
    if t.get("save_steps"):
        parts.append(f"save every {t['save_steps']}")
    parts += [f"seed {t.get('seed', '?')}", f"precision {t.get('precision', 'auto')}"]
    return ", ".join(parts)


def _trainer_extras(kind: str, t: dict) -> str:
    """The kind-specific trainer knobs of train: (beta for dpo, generation settings for grpo)."""
    parts = []
    if kind in ("dpo", "grpo") and t.get("beta") is not None:
        parts.append(f"beta {_num(t['beta'])}")
    if kind == "grpo":
        parts.append(f"{t.get('num_generations', '?')} generations × {t.get('max_completion_length', '?')} tokens, "
                     f"temperature {_num(t.get('temperature'))}")
    return ", ".join(parts)


def _lora_text(lora: Any) -> str:
    if not isinstance(lora, dict):
        return "full fine-tuning"
    modules = lora.get("target_modules")
    modules = ", ".join(modules) if isinstance(modules, list) else str(modules or "all-linear")
    extras = [f"dropout {_num(lora['dropout'])}"] if lora.get("dropout") else []
    if lora.get("use_dora"):
        extras.append("DoRA")
    return ", ".join([f"LoRA r {lora.get('r', '?')}, alpha {lora.get('alpha', '?')}", modules] + extras)


OPTION_LABELS = {"on_policy": "on-policy", "chat_template_kwargs": "template"}


def _option_text(option: str, value: Any, spec: dict) -> str:
    """A kind-specific setting as a line; '' when it says nothing (unset)."""
    if option == "on_policy":
        if not value:
            return "off"
        return (f"{value.get('prompts')} prompts × {value.get('samples')} samples, temperature "
                f"{_num(value.get('temperature'))}, {value.get('max_new_tokens')} new tokens")
    if option == "rollouts":
        if not value:
            return ""
        if not value.get("samples"):
            return "none stored"
        return f"{value.get('samples')} samples at step 1 and every {value.get('every') or 'logging_steps'} steps"
    if option == "tools":
        calls = spec.get("max_tool_calls")
        limit = f" (at most {calls} calls per rollout)" if calls else ""
        return ", ".join(str(v) for v in value or ()) + limit if value else "none"
    if option == "max_tool_calls":
        return ""  # shown with the tools
    if option == "rewards":
        return ", ".join(str(v) for v in value or ())
    if option == "chat_template_kwargs":
        return ", ".join(f"{k}={_plain(v)}" for k, v in (value or {}).items())
    return "" if value in (None, "", [], {}) else _plain(value)


def _eval_text(ev: Any, kind) -> str:
    if ev is None or ev is False:
        if kind is not None and kind.always_evaluates and ev is None:
            ev = {}
        else:
            return "none"
    if ev is True:
        ev = {}
    data = ev.get("data", "builtin:arithmetic-eval")
    metrics = ", ".join(ev.get("metrics") or ("accuracy", "perplexity"))
    text = f"{_data_text(data)}: {metrics} ({ev.get('max_samples', 500)} samples"
    if ev.get("format") not in (None, "auto"):
        text += f", {ev['format']} format"
    text += ")"
    if ev.get("tools"):
        text += f", tools {', '.join(ev['tools'])} (≤ {ev.get('max_tool_calls', 4)} calls)"
    return text


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def checkpoints_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    out: list[RenderableType] = [_title("Checkpoints", look, f"[dim]{escape(d.checkpoint_dir)}/[/]")]
    grid = _grid(look)
    groups = {"ok": "loadable", "gone": "recorded", "bad": "unusable"}
    for state, label in groups.items():
        steps = [c for c in d.checkpoints if c.state == state]
        if not steps:
            continue
        if state == "bad":
            for c in steps:
                grid.add_row(label, Text(f"step {c.step}: {c.note}", look.bad))
                label = ""
            continue
        listed = Text("steps " + ", ".join(str(c.step) for c in steps))
        if state == "gone":
            listed.append(" (no longer on disk)", look.muted)
        grid.add_row(label, listed)
    trains = KINDS.get(d.kind) is None or KINDS[d.kind].trains
    if not d.checkpoints and trains:
        grid.add_row("steps", Text("none yet" if d.status == StageStatus.WAITING else "none saved", look.muted))
    if d.final_exists:
        grid.add_row("final", Text(d.final + "/", look.good))
    else:
        if d.status in (StageStatus.WAITING, StageStatus.RUNNING):
            state = "written when the stage ends"
        else:
            state = "not on disk" if d.status in STAGE_OK else "not written"
        grid.add_row("final", Text(f"{d.final}/ — {state}", look.muted))
    out.append(_indent(grid))
    return out


def attempts_section(d: StageDetail, look: Palette) -> list[RenderableType]:
    count = f"{d.attempt} attempt{'s' if d.attempt != 1 else ''}" if d.attempt else "not started"
    out: list[RenderableType] = [_title("Attempts", look, f"[dim]{count}[/]")]
    severity = {"good": look.good, "warn": look.warn, "error": look.bad, "info": ""}
    grid = _grid(look)
    if d.history_dropped:
        grid.add_row("", Text(f"… {d.history_dropped} earlier", look.muted))
    for ts, text, level in d.history:
        grid.add_row(elapsed_stamp(ts, d.created_at), Text(text, severity.get(level, "")))
    if d.history or d.history_dropped:
        out.append(_indent(grid))
    return out


# -- the screen ------------------------------------------------------------------------------------
