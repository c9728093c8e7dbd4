"""Distillation through TRL's trainers: the stage's input model (the student) learns a teacher's next-token
distributions.

jsd: DistillationTrainer, generalized JSD to the teacher on completions the student samples itself;
gkd: GKDTrainer, the same loss on the student's samples for a share `lmbda` of steps, on the data's (or,
with seq_kd, the teacher's) completions for the rest; sdpo: SDPOTrainer, self-distillation, the student
shown feedback or one of its own successful rollouts (scored by the stage's rewards) is its teacher.
A teacher that is an adapter is loaded with its adapter chain merged.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from functools import partial

from core.datafiles import DataError
from workers.common import entry, leave
from workers.data import training_dataset
from workers.modeling import is_adapter, load_full, load_options, teacher_source
from workers.rewards import get_rewards
from workers.training import peft_config, run_training, training_args


def build_trainer(stage, loaded):
    return BUILDERS[stage.config.distill.method](stage, loaded)


def _jsd(stage, loaded):
    from trl import DistillationConfig, DistillationTrainer

    t = stage.train
    args = training_args(stage, DistillationConfig, beta=stage.config.distill.beta, temperature=t.temperature,
                         max_completion_length=t.max_completion_length)
    data = training_dataset(stage, stage.rows_needed(), shape=prompt_only)
    return DistillationTrainer(model=loaded.model, teacher_model=load_teacher(stage), args=args, train_dataset=data,
                               processing_class=loaded.tokenizer, peft_config=peft_config(stage, loaded))


def _gkd(stage, loaded):
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    t, d = stage.train, stage.config.distill
    args = training_args(stage, GKDConfig, beta=d.beta, lmbda=d.lmbda, seq_kd=d.seq_kd, temperature=t.temperature,
                         max_new_tokens=t.max_completion_length, max_length=t.max_length)
    data = training_dataset(stage, stage.rows_needed(), shape=whole_conversation)
    return GKDTrainer(model=loaded.model, teacher_model=load_teacher(stage), args=args, train_dataset=data,
                      processing_class=loaded.tokenizer, peft_config=peft_config(stage, loaded))


def _sdpo(stage, loaded):
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    t, feedback = stage.train, stage.config.distill.feedback
    args = training_args(stage, SDPOConfig, num_generations=t.num_generations, temperature=t.temperature,
                         max_completion_length=t.max_completion_length, include_environment_feedback=bool(feedback))
    data = training_dataset(stage, stage.rows_needed(), shape=partial(with_feedback, feedback) if feedback else None)
    with _starting_weights_on_disk(stage, loaded):
        return SDPOTrainer(model=loaded.model, reward_funcs=get_rewards(stage.config.rewards, stage.spec.sandbox),
                           args=args, train_dataset=data, processing_class=loaded.tokenizer,
                           peft_config=peft_config(stage, loaded))


BUILDERS = {"jsd": _jsd, "gkd": _gkd, "sdpo": _sdpo}


def load_teacher(stage):
    """The teacher (a stage's output, a model folder or model.base), its adapter chain merged, frozen."""
    source = teacher_source(stage.spec)
    teacher = load_full(source, stage.spec.model.trust_remote_code, load_options(stage.spec.model))
    stage.log(f"teacher loaded from {source}")
    return teacher.eval().requires_grad_(False)


@contextmanager
def _starting_weights_on_disk(stage, loaded):
    """SDPOTrainer builds the frozen or EMA teacher of full fine-tuning from the student's config path: while
    it does, where no folder holds the weights the student starts from (merged from adapters, freshly
    initialised), they are in scratch and the config points there."""
    config, fresh = loaded.model.config, stage.spec.model.init == "random" and stage.spec.input_model is None
    if stage.lora or not (fresh or is_adapter(loaded.source)):
        yield
        return
    folder, named = stage.scratch / "student-start", config._name_or_path
    loaded.model.save_pretrained(folder, safe_serialization=True)
    config._name_or_path = str(folder)
    try:
        yield
    finally:
        config._name_or_path = named
        shutil.rmtree(folder, ignore_errors=True)


def prompt_only(row: dict) -> dict:
    """The prompt the student answers: `prompt`, or a conversation without its final assistant turn."""
    if "prompt" in row:
        return {"prompt": row["prompt"]}
    messages = row["messages"]
    return {"prompt": messages[:-1] if messages[-1].get("role") == "assistant" else messages}


def whole_conversation(row: dict) -> dict:
    """GKD reads `messages` ending with the answer: a conversation, or chat-turn `prompt` + `completion`."""
    if "messages" in row:
        return {"messages": row["messages"]}
    if isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list):
        return {"messages": row["prompt"] + row["completion"]}
    raise DataError("a gkd distill row needs `messages`, or `prompt` and `completion` as chat turns")


def with_feedback(column: str, row: dict) -> dict:
    """The row, its `column` also as SDPO's `privileged_context` (the feedback the self-teacher is shown)."""
    return row | {"privileged_context": str(row[column])}


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    leave(entry(main))
