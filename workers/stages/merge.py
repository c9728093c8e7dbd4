"""Merge the lineage into one standalone model folder (safetensors, type full)."""
from __future__ import annotations

from workers.common import entry, leave, load_input, record_eval, save_final, source_step


def main(stage) -> None:
    source, model, tokenizer = load_input(stage)
    step = source_step(source)
    final = save_final(stage, model, tokenizer, step, base=None)
    stage.log(f"merged model saved to {final}")
    record_eval(stage, model, tokenizer, step)


if __name__ == "__main__":
    leave(entry(main))
