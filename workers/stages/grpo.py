"""Reinforcement learning with verifiable rewards (GRPOTrainer): rewards, tools and an environment by name,
rollouts stored."""
from __future__ import annotations

from core.registry import ENVIRONMENTS
from workers.common import entry, leave
from workers.data import training_dataset
from workers.functions import load_function
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
    environment = load_function(config.environment, ENVIRONMENTS, "environment") if config.environment else None
    trainer = GRPOTrainer(model=loaded.model, reward_funcs=get_rewards(config.rewards, stage.spec.sandbox), args=args,
                          train_dataset=data, processing_class=loaded.tokenizer, peft_config=peft_config(stage, loaded),
                          tools=get_tools(config.tools) or None, environment_factory=environment)
    keep = config.rollouts
    if keep.samples:
        RolloutRecorder(stage, keep.every or stage.train.logging_steps, keep.samples).attach(trainer)
    return trainer


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    leave(entry(main))
