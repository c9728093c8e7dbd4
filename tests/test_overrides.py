"""`--set KEY=VALUE`: parsed as YAML, applied before validation, errors name the override."""
import re
from pathlib import Path

import pytest
import yaml

from cli.main import main
from core.config_load import load_curriculum
from core.errors import ConfigError
from core.launch import new_run
from core.overrides import apply_overrides, parse_override
from core.status import summarize

MINI = Path(__file__).resolve().parent / "data" / "mini.yaml"


@pytest.mark.parametrize("text, key, value", [
    ("stages.sft.train.steps=50", "stages.sft.train.steps", 50),
    ("lr=1e-3", "lr", 1e-3), ("lr=3.0e-3", "lr", 3e-3), ("lr=.5", "lr", 0.5), ("lr=-2E4", "lr", -2e4),
    ("lr='1e-3'", "lr", "1e-3"),
    ("rewards=[a, b]", "rewards", ["a", "b"]), ("lora={r: 8}", "lora", {"r": 8}),
    ("model.base=/path/to/model", "model.base", "/path/to/model"), ("note=a=b", "note", "a=b"),
])
def test_values_are_yaml_and_numbers_are_numbers(text, key, value):
    o = parse_override(text)
    assert (o.key, o.value) == (key, value)
    assert type(o.value) is type(value)


@pytest.mark.parametrize("text", ["foo", "=1", "stages..sft=1", "x=[a,"])
def test_malformed_override_is_a_config_error_naming_it(text):
    with pytest.raises(ConfigError, match=r"^--set " + re.escape(text) + ": "):
        parse_override(text)


def test_stage_by_name_or_index_and_the_input_is_not_changed():
    data = {"stages": [{"name": "a", "train": {"steps": 1}}, {"name": "b"}]}
    out, paths = apply_overrides(data, [parse_override("stages.b.train.steps=5"),
                                        parse_override("stages.0.train.steps=2")])
    assert out["stages"] == [{"name": "a", "train": {"steps": 2}}, {"name": "b", "train": {"steps": 5}}]
    assert [p for p, _ in paths] == [("stages", 1, "train", "steps"), ("stages", 0, "train", "steps")]
    assert data["stages"][1] == {"name": "b"}


def test_overrides_reach_the_validated_curriculum():
    cur = load_curriculum(MINI, ["stages.sft.train.steps=50", "stages.0.train.lr=1e-3",
                                 "defaults.train.precision=fp32", "model.base=org/model",
                                 "stages.final.train.max_length=7"])
    assert cur.stage("sft").train.steps == 50
    assert cur.stage("pretrain").train.lr == 1e-3
    assert {s.train.precision for s in cur.stages} == {"fp32"}
    assert cur.model.base == "org/model"
    assert cur.stage("final").train.max_length == 7  # `final` has no train: mapping in the file


@pytest.mark.parametrize("override, words", [
    ("stages.sfft.train.steps=50", "--set stages.sfft.train.steps=50: no stage named 'sfft' (did you mean 'sft'?)"),
    ("stages.9.train.steps=5", "--set stages.9.train.steps=5: no stage 9 (there are 5"),
    ("stages.sft.train.stpes=5", "--set stages.sft.train.stpes: stages.1.train.stpes: unknown key "
                                 "(did you mean 'steps'?)"),
    ("stages.sft.trian.steps=5", "--set stages.sft.trian.steps: stages.1.trian: unknown key (did you mean 'train'?)"),
    ("stages.sft.train.steps=abc", "--set stages.sft.train.steps: stages.1.train.steps: Input should be a valid "
                                   "integer"),
    ("defaults.train.precision=fp99", "--set defaults.train.precision: defaults.train.precision: "),
    ("stages.pretrain.lora.r=8", "--set stages.pretrain.lora.r=8: stages.pretrain.lora is False, not a mapping"),
])
def test_bad_override_is_named_instead_of_a_file_line(override, words):
    with pytest.raises(ConfigError) as info:
        load_curriculum(MINI, [override])
    assert words in str(info.value)
    assert "mini.yaml" not in str(info.value)


def test_top_level_seed_fills_every_stage_without_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\nstages:\n  - {name: a, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    "  - {name: b, kind: sft, data: 'builtin:arithmetic-chat', train: {seed: 7}}\n")

    def seeds(*overrides):
        return [s.train.seed for s in load_curriculum(path, overrides).stages]

    assert seeds() == [42, 7]
    assert seeds("seed=1") == [1, 7]
    assert seeds("seed=1", "defaults.train.seed=5") == [5, 7]


def test_run_records_overrides_and_resolves_them_into_its_config(tmp_path):
    paths = new_run(MINI, tmp_path, ["stages.sft.train.steps=50", "seed=3"])
    resolved = yaml.safe_load(paths.config.read_text())
    assert resolved["seed"] == 3
    assert resolved["stages"][1]["train"]["steps"] == 50
    assert summarize(paths)["overrides"] == ["stages.sft.train.steps=50", "seed=3"]


@pytest.mark.parametrize("override, words", [("stages.sfft.train.steps=50", "did you mean 'sft'"),
                                             ("foo", "--set foo: expected KEY=VALUE")])
def test_cli_bad_override_exits_2_and_creates_nothing(tmp_path, capsys, override, words):
    runs = tmp_path / "runs"
    code = main(["run", str(MINI), "--batch", "--runs-dir", str(runs), "--set", "seed=1", "--set", override])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())
