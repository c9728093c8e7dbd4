"""Curriculum config: shipped files load, bad files fail with file, line and field."""
from pathlib import Path

import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").rglob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cur = load_curriculum(path)
    assert cur.stages, path


def test_demo_has_manual_gate_and_no_regression_rule():
    cur = load_curriculum(CONFIGS[0].parent / "demo.yaml")
    assert [s.kind for s in cur.stages] == ["pretrain", "sft", "dpo", "grpo", "merge"]
    assert any(s.gate and s.gate.approval == "manual" for s in cur.stages)
    assert any(s.gate and any(r.min_of for r in s.gate.require.values()) for s in cur.stages)


def test_from_defaults_to_previous_stage_and_defaults_apply(tmp_path):
    cur = load_curriculum(write(tmp_path, """
name: t
defaults: {lora: {r: 4}, train: {lr: 0.01, steps: 7}}
stages:
  - {name: a, kind: pretrain, data: "builtin:arithmetic-text"}
  - {name: b, kind: sft, data: "builtin:arithmetic-chat", train: {steps: 3}}
  - {name: c, kind: eval, from: a}
"""))
    a, b, c = cur.stages
    assert (a.from_, b.from_, c.from_) == (None, "a", "a")
    assert a.lora is None and b.lora.r == 4
    assert (b.train.lr, b.train.steps, a.train.steps) == (0.01, 3, 7)


@pytest.mark.parametrize("body, line, field, words", [
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', bogus: 1}\n", 3, "stages.0.bogus",
     "unknown key"),
    ("name: t\nstages:\n  - name: a\n    kind: sft\n    data: 'builtin:arithmetic-chat'\n    train: {steps: many}\n",
     6, "stages.0.train.steps", "integer"),
    ("name: t\nstages:\n  - {name: a, kind: teleport, data: x}\n", 3, "stages.0.kind", "teleport"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', from: b}\n"
     "  - {name: b, kind: sft, data: 'builtin:arithmetic-chat'}\n", 3, "stages.0.from", "later stage"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', from: zz}\n", 3, "stages.0.from",
     "no stage"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', from: a}\n", 3, "stages.0.from",
     "earlier stage"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: missing.jsonl}\n", 3, "stages.0.data", "not found"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat',\n"
     "     gate: {require: {eval/accuracy: {min_of: later}}}}\n", 4, "min_of", "earlier stage"),
    ("name: t\nstages:\n  - {name: a, kind: sft\n", 4, None, "malformed YAML"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat',\n     on_policy: {samples: 4}}\n",
     4, "stages.0.on_policy", "read by dpo and grpo stages"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', loss: ipo}\n", 3, "stages.0.loss",
     "loss is read by dpo stages, not sft"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat', eval: true,\n"
     "     gate: {require: {eval/acuracy: {min: 0.5}}}}\n", 4, "gate.require.eval/acuracy", "did you mean 'eval/accuracy'"),
    ("name: t\nstages:\n  - {name: a, kind: dpo, data: 'builtin:arithmetic-preference',\n"
     "     gate: {require: {reward: {min: 0.5}}}}\n", 4, "gate.require.reward", "a dpo stage never records 'reward'"),
    ("name: t\nstages:\n  - {name: a, kind: sft, data: 'builtin:arithmetic-chat',\n"
     "     gate: {require: {eval/accuracy: {min: 0.5}}}}\n", 4, "gate.require.eval/accuracy", "has no eval: to record it"),
])
def test_bad_config_names_file_line_and_field(tmp_path, body, line, field, words):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_curriculum(path)
    text = str(info.value)
    assert f"{path}:{line}" in text, text
    assert field is None or field in text, text
    assert words in text, text


def test_on_policy_dpo_reads_prompt_rows_not_pairs(tmp_path):
    rows = write(tmp_path, '{"prompt": "2+2=", "answer": "4"}\n', "p.jsonl")
    body = f"name: t\nstages:\n  - {{name: a, kind: dpo, data: {rows}, on_policy: {{samples: 4}}}}\n"
    assert load_curriculum(write(tmp_path, body)).stages[0].on_policy.samples == 4
    with pytest.raises(ConfigError, match="chosen"):
        load_curriculum(write(tmp_path, body.replace(", on_policy: {samples: 4}", "")))


def test_broken_jsonl_row_is_reported_with_its_line(tmp_path):
    write(tmp_path, '{"messages": []}\n{"messages": [\n', "d.jsonl")
    path = write(tmp_path, "name: t\nstages:\n  - {name: a, kind: sft, data: d.jsonl}\n")
    with pytest.raises(ConfigError, match=r"d.jsonl:2: .*broken JSON"):
        load_curriculum(path)


def test_broken_rows_can_be_skipped(tmp_path):
    write(tmp_path, '{"messages": []}\nnot json\n', "d.jsonl")
    path = write(tmp_path, "name: t\nstages:\n  - {name: a, kind: sft, data: {source: d.jsonl, on_error: skip}}\n")
    assert load_curriculum(path).stages[0].data.source == str(tmp_path / "d.jsonl")


def test_empty_data_file_is_an_error(tmp_path):
    write(tmp_path, "", "d.jsonl")
    path = write(tmp_path, "name: t\nstages:\n  - {name: a, kind: sft, data: d.jsonl}\n")
    with pytest.raises(ConfigError, match="no usable rows"):
        load_curriculum(path)


def test_extends_merges_parent_and_errors_point_into_the_right_file(tmp_path):
    write(tmp_path, "name: base\nmodel: {backend: hf}\ndefaults: {train: {lr: 0.5}}\n"
                    "stages:\n  - {name: a, kind: pretrain, data: 'builtin:arithmetic-text'}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\ndefaults: {train: {steps: 9}}\n")
    cur = load_curriculum(child)
    assert cur.name == "child" and cur.model.backend == "hf"
    assert cur.stages[0].train.lr == 0.5 and cur.stages[0].train.steps == 9
    bad_parent = write(tmp_path, "name: p\nstages:\n  - {name: a, kind: pretrain, data: 'builtin:arithmetic-text',"
                                 " oops: 1}\n", "p.yaml")
    child2 = write(tmp_path, "extends: p.yaml\nname: c2\n", "c2.yaml")
    with pytest.raises(ConfigError) as info:
        load_curriculum(child2)
    assert f"{bad_parent}:3" in str(info.value)


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_curriculum(tmp_path / "a.yaml")
