"""Route (mixture of LoRA experts): the expert stages' adapters on their common parent, behind a router.

router: classifier trains a sequence classifier (the parent's body, a LoRA and a head; transformers'
Trainer) on prompts from the experts' own data and records routing/accuracy on a held-out split with
its confusion matrix; each input is then answered by the expert it names. router: xlora is peft's X-LoRA:
a small head trained (transformers' Trainer: TRL's SFTTrainer fuses the LM head, and X-LoRA's scaling pass
needs the hidden states) to mix the frozen experts per token. router: arrow is peft's training-free Arrow
routing (per token, over the top_k experts).
"""
from __future__ import annotations

import json
import os
import shutil

from core.events import EventKind
from core.kinds import CHAT_ROWS
from workers.callback import StoreCallback
from workers.common import (Stage, entry, leave, quiet_libraries, record_eval, replace_dir, started)
from workers.data import load_rows
from workers.heldout import make_items, resolve_format
from workers.modeling import count_params, load_full, load_options, load_tokenizer, resolve_source
from workers.routing import (RoutedModel, classifier_from, routing_accuracy, routing_data, save_xlora_head,
                             xlora_examples, xlora_model)
from workers.training import training_args


def main(stage: Stage) -> None:
    quiet_libraries()
    source, trust = resolve_source(stage.spec), stage.spec.model.trust_remote_code
    parent = load_full(source, trust, load_options(stage.spec.model, quantize=False))
    tokenizer = load_tokenizer(source, trust)
    route = stage.config.route
    names = [e.name for e in stage.spec.experts]
    if route.router == "arrow":
        model, router, step = arrow_model(stage, parent), None, 0
    elif route.router == "xlora":
        model, step = train_xlora(stage, parent, tokenizer)
        router = model
    else:
        router, step = train_router(stage, parent, tokenizer)
        model = RoutedModel(expert_adapters(stage, parent), names, router, tokenizer.pad_token_id)
    final = save_routed(stage, router, tokenizer, source, step)
    stage.log(f"{route.router} router over {', '.join(names)} saved to {final}")
    record_eval(stage, model, tokenizer, step)


def expert_adapters(stage: Stage, parent):
    """One PeftModel holding every expert's adapter under the expert stage's name."""
    from peft import PeftModel

    first, *rest = stage.spec.experts
    model = PeftModel.from_pretrained(parent, first.path, adapter_name=first.name)
    for expert in rest:
        model.load_adapter(expert.path, adapter_name=expert.name)
    return model.eval()


def arrow_model(stage: Stage, parent):
    """peft's Arrow: each token mixes the top_k experts whose adapters align best with its hidden state."""
    from peft import ArrowConfig, create_arrow_model

    route = stage.config.route
    config = ArrowConfig(top_k=min(route.top_k, len(stage.spec.experts)), rng_seed=stage.train.seed)
    model = create_arrow_model(parent, [e.path for e in stage.spec.experts], config)
    started(stage, 0, "hf", count_params(model), router="arrow")
    return model.eval()


def train_xlora(stage: Stage, parent, tokenizer):
    """peft's X-LoRA over the experts' adapters (frozen), its scaling head trained on their own chats."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    route, experts = stage.config.route, stage.spec.experts
    rows = [load_rows(e.data, CHAT_ROWS) for e in experts]
    data = Dataset.from_list(xlora_examples(rows, tokenizer, route.samples, stage.train.seed, stage.train.max_length))
    model = xlora_model(parent, [e.path for e in experts])
    trainer = Trainer(model=model, args=training_args(stage, TrainingArguments), train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True))
    trainer.add_callback(StoreCallback(stage.store, stage.name, stage.scratch, stage.checkpoints))
    stage.trainer = trainer
    started(stage, stage.train.steps, "hf", count_params(model), router="xlora", rows=len(data))
    trainer.train(resume_from_checkpoint=stage.resume_point())
    return model.eval(), trainer.state.global_step


def train_router(stage: Stage, parent, tokenizer):
    """The classifier router, trained on the experts' prompts; its held-out accuracy and confusion recorded."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    route, experts = stage.config.route, stage.spec.experts
    fmt = resolve_format("auto", "sft", tokenizer)
    prompts = [[i.prompt for i in make_items(load_rows(e.data, CHAT_ROWS), fmt, tokenizer)] for e in experts]
    split = routing_data(prompts, route.samples, route.holdout, stage.train.seed)
    enc = tokenizer([p for p, _ in split.train], add_special_tokens=False, truncation=True,
                    max_length=stage.train.max_length)
    data = Dataset.from_dict({**enc, "labels": [label for _, label in split.train]})
    clf = classifier_from(parent, len(experts), tokenizer.pad_token_id, stage.lora)
    trainer = Trainer(model=clf, args=training_args(stage, TrainingArguments), train_dataset=data,
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.add_callback(StoreCallback(stage.store, stage.name, stage.scratch, stage.checkpoints))
    stage.trainer = trainer
    started(stage, stage.train.steps, "hf", count_params(clf), router="classifier",
            routing_prompts={"train": len(split.train), "held_out": len(split.held_out)})
    trainer.train(resume_from_checkpoint=stage.resume_point())
    step = trainer.state.global_step
    accuracy, confusion = routing_accuracy(clf, tokenizer, split.held_out, len(experts))
    stage.emit(EventKind.EVAL_RESULT, step=step, name="routing/accuracy", value=accuracy,
               samples=len(split.held_out), format=fmt, experts=[e.name for e in experts], confusion=confusion)
    stage.log(f"routing/accuracy = {accuracy:.4f} on {len(split.held_out)} held-out prompts; confusion "
              f"(row: expert, column: routed to) {confusion}")
    return clf, step


def save_routed(stage: Stage, router, tokenizer, source: str, step: int):
    """`final/`: cockpit.json (type routed: the router, the experts' adapters, their base) and the classifier."""
    final, tmp = stage.output_dir / "final", stage.output_dir / f".final.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if stage.config.route.router == "xlora":
        save_xlora_head(router, tmp / "router")
    elif router is not None:
        router.save_pretrained(tmp / "router", safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    route = stage.config.route
    meta = {"type": "routed", "router": route.router, "top_k": route.top_k, "base": source, "stage": stage.name,
            "step": step, "experts": {e.name: e.path for e in stage.spec.experts}}
    (tmp / "cockpit.json").write_text(json.dumps(meta, indent=1))
    replace_dir(tmp, final)
    return final


if __name__ == "__main__":
    leave(entry(main))
