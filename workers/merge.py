"""Merge the lineage into one standalone model folder (safetensors, type full)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from workers.common import entry, quiet_libraries, record_eval, save_final, started
from workers.modeling import count_params, load_full, load_tokenizer, resolve_source


def source_step(source: str) -> int:
    """The step recorded in a stage output's cockpit.json (0 when there is none)."""
    meta = Path(source) / "cockpit.json"
    return (json.loads(meta.read_text()).get("step") or 0) if meta.is_file() else 0


def load_input(stage):
    """The input model with every adapter of its chain merged in, and its tokenizer."""
    quiet_libraries()
    source = resolve_source(stage.spec)
    trust = bool(stage.spec["model"].get("trust_remote_code"))
    model, tokenizer = load_full(source, trust), load_tokenizer(source, trust)
    started(stage, 0, "hf", count_params(model))
    stage.log(f"loaded {source} with its adapter chain merged ({count_params(model)['total']:,} parameters)")
    return source, model, tokenizer


def main(stage) -> None:
    source, model, tokenizer = load_input(stage)
    step = source_step(source)
    final = save_final(stage, model, tokenizer, step, base=None)
    stage.log(f"merged model saved to {final}")
    record_eval(stage, model, tokenizer, step)


if __name__ == "__main__":
    sys.exit(entry(main))
