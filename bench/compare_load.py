"""Compare load: 4 adapters of one base through the shared pool vs 4 separate loads (base + adapter each).

The pool loads the base once and attaches each adapter with peft (`load_adapter`); the separate way
loads the base again for every adapter. Both end with all 4 adapters usable. Run on the builtin
tiny model and on a wider random Qwen3 (--hidden/--layers) where the base load is not negligible.

    .venv/bin/python bench/compare_load.py [--hidden 512 --layers 8] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ADAPTERS = 4


def build(folder: Path, hidden: int | None, layers: int | None) -> tuple[Path, list[Path]]:
    """A base model folder (the builtin, optionally wider/deeper) and 4 random LoRA adapters on it."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from tiny_lineage import _save_adapter
    from workers import builtin

    tokenizer = builtin.build_tokenizer()
    shape = dict(builtin.MODEL_CONFIG)
    if hidden:
        shape.update(hidden_size=hidden, intermediate_size=4 * hidden, head_dim=hidden // shape["num_attention_heads"])
    if layers:
        shape["num_hidden_layers"] = layers
    torch.manual_seed(0)
    base = folder / "base"
    Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **shape)
                     ).save_pretrained(base)
    tokenizer.save_pretrained(base)
    adapters = [folder / f"adapter-{n}" for n in range(ADAPTERS)]
    for n, path in enumerate(adapters):
        _save_adapter(base, path, seed=n, step=n, meta={"type": "adapter", "base": str(base), "step": n})
    return base, adapters


def pooled(base: Path, adapters: list[Path]) -> float:
    from workers.chat.model_pool import ModelPool

    started = time.perf_counter()
    pool = ModelPool()
    for path in adapters:
        pool.activate({"label": path.name, "path": str(path), "base": str(base)})
    return time.perf_counter() - started


def separate(base: Path, adapters: list[Path]) -> float:
    from workers.chat.model_pool import ModelPool

    started = time.perf_counter()
    for path in adapters:
        ModelPool().activate({"label": path.name, "path": str(path), "base": str(base)})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base, adapters = build(Path(tempfile.mkdtemp()), args.hidden, args.layers)
    pooled(base, adapters), separate(base, adapters)  # warm the file cache and lazy imports
    times = {"pool": [], "separate": []}
    for _ in range(args.repeats):
        times["pool"].append(pooled(base, adapters))
        times["separate"].append(separate(base, adapters))
    params = _params(base)
    pool_s, sep_s = statistics.median(times["pool"]), statistics.median(times["separate"])
    print(f"{ADAPTERS} adapters on one base of {params / 1e6:.2f} M parameters, median of {args.repeats}:")
    print(f"  shared base (pool): {pool_s * 1000:8.1f} ms   1 base in memory")
    print(f"  separate loads:     {sep_s * 1000:8.1f} ms   {ADAPTERS} bases in memory")
    print(f"  speed-up: {sep_s / pool_s:.2f}x")
    return 0


def _params(base: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(base / "model.safetensors"), "pt") as f:
        return sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


if __name__ == "__main__":
    sys.exit(main())
