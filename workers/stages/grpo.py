"""Reinforcement learning with verifiable rewards (GRPOTrainer): rewards and tools by name, rollouts stored."""
from __future__ import annotations

import sys

from workers.common import entry
from workers.data import training_dataset
from workers.policy_samples import mined_dataset, sometimes_solved
from workers.rewards import get_rewards
from workers.rollouts import RolloutRecorder
from workers.tools import get_tools
from workers.training import peft_config, run_training, training_args


def build_trainer(stage, loaded):
    from trl import GRPOConfig, GRPOTrainer

    t, config = stage.train, stage.config
    args = training_args(stage, GRPOConfig, beta=t.beta or 0.0, num_generations=t.num_generations,
                         max_completion_length=t.max_completion_length, temperature=t.temperature,
                         log_completions=False, max_tool_calling_iterations=config.max_tool_calls,
                         chat_template_kwargs=config.chat_template_kwargs or None)
    if config.on_policy:
        data = mined_dataset(stage, loaded, sometimes_solved)
    else:
        data = training_dataset(stage, stage.rows_needed())
    rewards = get_rewards(config.rewards, stage.spec.sandbox)
    keep = config.rollouts
    if keep.samples:
        rewards = RolloutRecorder(stage, rewards, keep.every or stage.train.logging_steps, keep.samples).funcs
    return GRPOTrainer(model=loaded.model, reward_funcs=rewards, args=args, train_dataset=data,
                       processing_class=loaded.tokenizer, peft_config=peft_config(stage, loaded),
                       tools=get_tools(config.tools) or None)


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    sys.exit(entry(main))
