"""Evaluate the input model only (no training): eval_result events."""
from __future__ import annotations

from workers.common import entry, leave, load_input, record_eval, source_step


def main(stage) -> None:
    source, model, tokenizer = load_input(stage)
    results = record_eval(stage, model, tokenizer, source_step(source))
    if not results:
        stage.log("no eval results: the eval spec names no metric the data can serve", "warning")


if __name__ == "__main__":
    leave(entry(main))
