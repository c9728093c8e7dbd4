"""Reinforcement learning with verifiable rewards (GRPOTrainer; rewards by name from workers.rewards)."""
from __future__ import annotations

import sys

from workers.common import entry
from workers.data import training_dataset
from workers.policy_samples import mined_dataset, sometimes_solved
from workers.rewards import get_rewards
from workers.rollouts import RolloutRecorder
from workers.training import peft_config, run_training, training_args


def build_trainer(stage, loaded):
    from trl import GRPOConfig, GRPOTrainer

    t = stage.train
    args = training_args(stage, GRPOConfig, beta=t.beta or 0.0, num_generations=t.num_generations,
                         max_completion_length=t.max_completion_length, temperature=t.temperature,
                         log_completions=False)
    if stage.config.on_policy:
        data = mined_dataset(stage, loaded, sometimes_solved)
    else:
        data = training_dataset(stage, stage.rows_needed())
    rewards = get_rewards(stage.config.rewards, stage.spec.sandbox)
    keep = stage.config.rollouts
    if keep.samples:
        rewards = RolloutRecorder(stage, rewards, keep.every or stage.train.logging_steps, keep.samples).funcs
    return GRPOTrainer(model=loaded.model, reward_funcs=rewards, args=args, train_dataset=data,
                       processing_class=loaded.tokenizer, peft_config=peft_config(stage, loaded))


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    sys.exit(entry(main))
