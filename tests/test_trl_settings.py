"""The `trl:` pass-through: TRL's own config fields reach the trainer, checked at load against the class."""
from pathlib import Path

import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError

CONFIG = """
name: t
defaults:
  trl: {{logging_first_step: true}}
stages:
  - name: sft
    kind: sft
    data: "builtin:arithmetic-chat"
    trl: {sft}
  - name: dpo
    kind: dpo
    data: "builtin:arithmetic-preference"
    trl: {dpo}
  - name: final
    kind: merge
"""


def load(tmp_path: Path, sft: str = "{packing: true}", dpo: str = "{}", extra: str = ""):
    path = tmp_path / "t.yaml"
    path.write_text(CONFIG.format(sft=sft, dpo=dpo) + extra)
    return load_curriculum(path)


def test_trl_settings_merge_over_the_defaults_on_training_stages(tmp_path):
    sft, dpo, final = load(tmp_path).stages
    assert sft.trl == {"logging_first_step": True, "packing": True}
    assert dpo.trl == {"logging_first_step": True} and final.trl == {}


@pytest.mark.parametrize("sft, dpo, words", [
    ("{paking: true}", "{}", "stages.0.trl.paking: SFTConfig has no field 'paking' (did you mean 'packing'?)"),
    ("{learning_rate: 0.1}", "{}", "stages.0.trl.learning_rate: learning_rate is set by train.lr, not through trl:"),
    ("{}", "{loss_type: ipo}", "stages.1.trl.loss_type: loss_type is set by loss, not through trl:"),
    ("{}", "{ld_alpah: 0.5}", "DPOConfig has no field 'ld_alpah' (did you mean 'ld_alpha'?)"),
])
def test_unknown_and_owned_fields_are_config_errors(tmp_path, sft, dpo, words):
    with pytest.raises(ConfigError, match="t.yaml:") as info:
        load(tmp_path, sft, dpo)
    assert words in str(info.value)


def test_a_stage_that_does_not_train_takes_no_trl_settings(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    "  - {name: m, kind: merge, trl: {packing: true}}\n")
    with pytest.raises(ConfigError, match="stages.1.trl.packing: a merge stage does not train"):
        load_curriculum(path)


def test_a_trl_setting_reaches_the_trainer(worker_run):
    # logging_first_step is TRL's (TrainingArguments'), not the cockpit's: with it, step 1 is logged too
    spec = worker_run.spec("sft", "sft", data="builtin:arithmetic-chat", lora={"r": 4},
                           train={"logging_steps": 2}, trl={"logging_first_step": True})
    done = worker_run.run("sft", spec)
    assert done.returncode == 0, done.stderr[-2000:]
    with worker_run.store() as store:
        steps = sorted({e.step for e in store.events(kinds=["metric"], stage="sft") if e.name == "loss"})
    assert steps == [1, 2, 4]


def test_packing_fills_each_step_with_more_tokens(worker_run):
    """TRL's packing through `trl:`: short pretraining lines packed into 48-token rows train on several
    times the tokens per step, and the stage's tokens/s shows it."""
    per_step = {}
    for packed in (False, True):
        name = f"packed-{packed}".lower()
        spec = worker_run.spec(name, "pretrain", data="builtin:arithmetic-text", lora=False, eval=False,
                               train={"steps": 4, "batch_size": 4, "max_length": 48, "logging_steps": 1},
                               trl={"packing": packed})
        done = worker_run.run("pretrain", spec)
        assert done.returncode == 0, done.stderr[-2000:]
        with worker_run.store() as store:
            seen = {e.step: e.value for e in store.events(kinds=["metric"], stage=name) if e.name == "num_tokens"}
            rates = [e.value for e in store.events(kinds=["metric"], stage=name) if e.name == "train/tokens_per_s"]
        per_step[packed] = (seen[4] - seen[1]) / 3
        assert rates and all(r > 0 for r in rates)
    assert per_step[True] > 2.5 * per_step[False], per_step  # a line is ~12 tokens; a packed row holds 48
