"""The `trl:` pass-through: settings handed to a stage's TRL config class (SFTConfig, DPOConfig, GRPOConfig),
checked at load against that class's own fields, so packing, `use_liger_kernel`, `num_train_epochs`,
`reward_weights`, ... reach TRL without the cockpit declaring each one.

The fields the cockpit sets itself (from `train:` and the stage's own keys) are not open to `trl:`:
naming one is an error that says where it is set instead.
"""
from __future__ import annotations

import difflib
from functools import lru_cache

OWNED = {  # TRL field -> where the curriculum sets it
    "output_dir": "the cockpit (the stage's folder)", "max_steps": "train.steps",
    "per_device_train_batch_size": "train.batch_size", "gradient_accumulation_steps": "train.grad_accum",
    "learning_rate": "train.lr", "warmup_steps": "train.warmup_steps", "weight_decay": "train.weight_decay",
    "adam_beta2": "train.adam_beta2", "logging_steps": "train.logging_steps", "save_steps": "train.save_steps",
    "save_strategy": "train.save_steps", "seed": "train.seed", "bf16": "train.precision",
    "fp16": "train.precision", "lr_scheduler_type": "train.scheduler", "lr_scheduler_kwargs": "train.min_lr_ratio",
    "max_length": "train.max_length", "beta": "train.beta", "num_generations": "train.num_generations",
    "max_completion_length": "train.max_completion_length", "temperature": "train.temperature",
    "max_tool_calling_iterations": "max_tool_calls", "chat_template_kwargs": "chat_template_kwargs",
    "use_cpu": "the cockpit (the machine)", "ddp_backend": "the cockpit (train.nproc)",
    "report_to": "the cockpit (the run store)", "logging_dir": "the cockpit (the run store)",
    "gradient_checkpointing": "model.gradient_checkpointing", "fsdp": "train.strategy",
}
OWNED_BY_KIND = {"dpo": {"loss_type": "loss"},
                 "distill": {"beta": "distill.beta", "lmbda": "distill.lmbda", "seq_kd": "distill.seq_kd",
                             "teacher_model_name_or_path": "distill.teacher",
                             "max_new_tokens": "train.max_completion_length",
                             "include_environment_feedback": "distill.feedback"}}


def config_class(trainer: str) -> tuple[str, str]:
    """The module and name of a trainer's config class: SFTTrainer -> (trl, SFTConfig),
    trl.experimental.gkd.GKDTrainer -> (trl.experimental.gkd, GKDConfig), transformers.Trainer ->
    (transformers, TrainingArguments)."""
    module, _, name = trainer.rpartition(".")
    return module or "trl", "TrainingArguments" if name == "Trainer" else name.removesuffix("Trainer") + "Config"


def config_class_name(trainer: str) -> str:
    return config_class(trainer)[1]


@lru_cache(maxsize=None)
def config_fields(trainer: str) -> frozenset[str]:
    """The field names of the trainer's config class (imports it only when a `trl:` mapping is used)."""
    import dataclasses
    import importlib
    import warnings

    module, name = config_class(trainer)
    with warnings.catch_warnings():  # trl.experimental warns that its APIs may change: `check` need not say so
        warnings.simplefilter("ignore")
        config = getattr(importlib.import_module(module), name)
    return frozenset(f.name for f in dataclasses.fields(config))


def setting_problem(kind: str, trainer: str | None, key: str) -> str | None:
    """Why `key` cannot be set through `trl:` on a stage of `kind` (with a "did you mean"), or None."""
    if trainer is None:
        return f"a {kind} stage does not train: it has no TRL settings"
    owned = OWNED_BY_KIND.get(kind, {}).get(key) or OWNED.get(key)
    if owned:
        return f"{key} is set by {owned}, not through trl:"
    fields = config_fields(trainer)
    if key in fields:
        return None
    hit = difflib.get_close_matches(key, fields, n=1)
    return f"{config_class_name(trainer)} has no field {key!r}" + (f" (did you mean {hit[0]!r}?)" if hit else "")
