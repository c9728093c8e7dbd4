"""Preference optimisation (DPOTrainer; loss_type from stage.loss, e.g. sigmoid or ipo).

With a LoRA adapter the reference model is the adapter disabled: exactly the parent stage's policy.
"""
from __future__ import annotations

from workers.common import entry, leave
from workers.data import training_dataset
from workers.policy_samples import mined_dataset, preference_pairs
from workers.training import peft_config, run_training, training_args

DEFAULT_BETA = 0.1


def build_trainer(stage, loaded):
    from trl import DPOConfig, DPOTrainer

    beta = stage.train.beta
    args = training_args(stage, DPOConfig, max_length=stage.train.max_length,
                         loss_type=[t.strip() for t in stage.config.loss.split(",")],
                         beta=DEFAULT_BETA if beta is None else beta)
    if stage.config.on_policy:
        data = mined_dataset(stage, loaded, preference_pairs)
    else:
        data = training_dataset(stage, stage.rows_needed())
    return DPOTrainer(model=loaded.model, args=args, train_dataset=data, processing_class=loaded.tokenizer,
                      peft_config=peft_config(stage, loaded))


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    leave(entry(main))
