"""Supervised fine-tuning on chats (SFTTrainer, loss on assistant turns only)."""
from __future__ import annotations

from core.datafiles import DataError
from workers.common import entry, leave
from workers.data import training_dataset
from workers.training import peft_config, run_training, training_args


def build_trainer(stage, loaded):
    from trl import SFTConfig, SFTTrainer

    data = training_dataset(stage, stage.rows_needed(), shape=conversation)
    args = training_args(stage, SFTConfig, max_length=stage.train.max_length,
                         assistant_only_loss="messages" in data.column_names)
    return SFTTrainer(model=loaded.model, args=args, train_dataset=data, processing_class=loaded.tokenizer,
                      peft_config=peft_config(stage, loaded))


def conversation(row: dict) -> dict:
    """Keep only the conversational fields SFTTrainer reads (messages, or prompt + completion; and the `tools`
    schemas of tool-use transcripts)."""
    tools = {"tools": row["tools"]} if "tools" in row else {}
    if "messages" in row:
        return {"messages": row["messages"], **tools}
    if "completion" not in row:
        raise DataError("an sft row needs `messages`, or `prompt` and `completion`")
    return {"prompt": row["prompt"], "completion": row["completion"], **tools}


def main(stage) -> None:
    run_training(stage, build_trainer)


if __name__ == "__main__":
    leave(entry(main))
