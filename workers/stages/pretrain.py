"""Pretraining on raw text (SFTTrainer, full fine-tuning unless the stage asks for LoRA)."""
from __future__ import annotations

from workers.common import entry, leave
from workers.data import training_dataset
from workers.training import peft_config, run_training, training_args


def build_trainer(stage, loaded):
    from trl import SFTConfig, SFTTrainer

    args = training_args(stage, SFTConfig, max_length=stage.train.max_length, dataset_text_field="text")
    data = training_dataset(stage, stage.rows_needed(), shape=lambda row: {"text": row["text"]})
    return SFTTrainer(model=loaded.model, args=args, train_dataset=data, processing_class=loaded.tokenizer,
                      peft_config=peft_config(stage, loaded))


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    leave(entry(main))
