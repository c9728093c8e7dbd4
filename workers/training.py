"""What the four training kinds share: TRL config from TrainSpec, the train -> save -> eval sequence.

`train.strategy: fsdp` is accelerate's FSDP2 through the trainer's own `fsdp`/`fsdp_config`: every rank joins
the gather of the full weights for the final save, and rank 0 evaluates the saved model (its shards cannot
run alone). Accelerate 1.15 turns FSDP on only for GPU-type devices (on CPU with gloo it quietly trains DDP),
so a worker without a GPU refuses the setting instead of training something other than asked.
"""
from __future__ import annotations

from pathlib import Path

from core.config import TrainSpec
from core.errors import SpecError
from workers import context_phases
from workers.callback import StoreCallback
from workers.common import Stage, quiet_libraries, record_eval, save_final, started
from workers.adapter_targets import experts_warning, lora_config, trainable_by_family
from workers.modeling import count_params, gradient_checkpointing, load_for_training, load_full, load_options


def cpu_has_bf16() -> bool:
    """avx512_bf16 or AMX: where bf16 autocast on CPU is faster than fp32 (else it is emulated, slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def scheduler_args(train: TrainSpec) -> dict:
    if train.scheduler == "cosine" and train.min_lr_ratio > 0:
        return {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": train.min_lr_ratio}}
    return {"lr_scheduler_type": train.scheduler}


def training_args(stage: Stage, config_cls, **extra):
    """A TRL config (SFTConfig, DPOConfig, GRPOConfig) from the stage's TrainSpec, the kind's `extra` settings,
    and the stage's `trl:` mapping."""
    import torch

    t, cuda = stage.train, torch.cuda.is_available()
    precision = resolve_precision(t.precision)
    owned = dict(
        output_dir=str(stage.scratch), max_steps=t.steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, adam_beta2=t.adam_beta2, logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "no", save_steps=t.save_steps or 500, seed=t.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not cuda,
        ddp_backend=None if cuda or stage.world_size == 1 else "gloo", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, **scheduler_args(t),
        **checkpointing_args(config_cls, gradient_checkpointing(stage.spec.model)))
    # trl: (checked at load) over the kind's defaults; fsdp's settings merge trl's fsdp_config over the cockpit's
    return config_cls(**owned | extra | stage.config.trl | fsdp_args(stage, config_cls, cuda))


def fsdp_args(stage: Stage, config_cls, cuda: bool) -> dict:
    """FSDP2 when train.strategy is fsdp ({} for ddp): each decoder layer wrapped (accelerate reads the model's
    `_no_split_modules`), FSDP's own activation checkpointing instead of the trainer's (which would gather
    every layer twice), full weights gathered for saving; `trl: {fsdp_config: ...}` goes over these."""
    if stage.train.strategy != "fsdp":
        return {}
    if not cuda:
        raise SpecError("train.strategy: fsdp needs GPUs (accelerate shards a model only across GPU-type devices; "
                        "on CPU it would train DDP instead): use strategy: ddp on this machine")
    own = {"version": 2, "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT",
           "activation_checkpointing": gradient_checkpointing(stage.spec.model)}
    return {"fsdp": True, "fsdp_config": own | stage.config.trl.get("fsdp_config", {}),
            **checkpointing_args(config_cls, False)}


def gathered_weights(trainer) -> dict | None:
    """Under FSDP, the full weights for rank 0's save (every rank must call this: it is a collective)."""
    return trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None


def checkpointing_args(config_cls, on: bool) -> dict:
    """Activation (gradient) checkpointing on or off, under the name this transformers reads: since 5.2x
    `activation_checkpointing` wins over its deprecated alias, so setting only the old name does nothing."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def peft_config(stage: Stage, loaded):
    """The LoraConfig to hand the trainer; None for full fine-tuning or an already-wrapped unsloth model."""
    if not stage.lora or loaded.backend == "unsloth":
        return None
    return lora_config(stage.lora, loaded.model)


def run_training(stage: Stage, build_trainer) -> None:
    """setup -> train (resuming when asked) -> save final -> evaluate; `build_trainer(stage, loaded)`."""
    quiet_libraries()
    loaded = load_for_training(stage.spec, stage.lora, stage.train.max_length, stage.scratch)
    stage.log(f"model loaded from {loaded.source} on backend {loaded.backend} "
              f"({count_params(loaded.model)['total']:,} parameters)")
    trainer = build_trainer(stage, loaded)
    trainer.add_callback(StoreCallback(stage.store, stage.name, stage.scratch, stage.checkpoints))
    context_phases.attach(trainer, stage)
    stage.trainer = trainer
    adapter = trainable_by_family(trainer.model)
    warning = experts_warning(trainer.model, adapter, stage.lora)
    started(stage, stage.train.steps, loaded.backend, count_params(trainer.model), adapter=adapter,
            gradient_checkpointing=bool(trainer.args.gradient_checkpointing))
    if warning:
        stage.log(warning, level="warning")
    resume = stage.resume_point()
    if resume:
        stage.log(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    step = trainer.state.global_step
    weights = gathered_weights(trainer)
    if stage.rank != 0:
        return
    model = trainer.accelerator.unwrap_model(trainer.model) if weights is not None else trainer.model
    final = save_final(stage, model, loaded.tokenizer, step, base=loaded.source, state_dict=weights)
    stage.log(f"final model saved to {final}")
    if weights is not None:  # rank 0's shards cannot run a forward pass alone
        options = load_options(stage.spec.model, quantize=False)
        model = load_full(str(final), stage.spec.model.trust_remote_code, options).to(model.device)
    record_eval(stage, model, loaded.tokenizer, step)
