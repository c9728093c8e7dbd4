"""Cockpit overhead: the same SFT work run by a bare TRL script and by `cockpit run --batch`, side by side.

    .venv/bin/python bench/overhead.py [--steps 200] [--batch-size 32] [--pairs 5]

Both train builtin:tiny-qwen3 with LoRA r=16 on builtin:arithmetic-chat for `--steps` steps, no
checkpoints, no eval. Per-step time comes from each run's `train_runtime`; end-to-end is the wall
time of each process (imports, model creation, supervisor, store included). `--pairs` pairs run one
after another, the order alternating (bare first, then cockpit first, ...) so that a drift of the
machine's speed hits both sides alike; every pair is printed, then the median ratio and its spread.
Run it alone: on 2 cores anything beside it shows up as overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

BARE = """
import json, sys
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer
from datasets import Dataset
from workers.builtin import builtin_rows, materialise
from transformers import AutoModelForCausalLM, AutoTokenizer
steps, batch, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = materialise(where)
rows = [{"messages": r["messages"]} for r in builtin_rows("arithmetic-chat")[:steps * batch]]
args = SFTConfig(output_dir=where + "/out", max_steps=steps, per_device_train_batch_size=batch, learning_rate=3e-3,
                 logging_steps=10, save_strategy="no", use_cpu=True, bf16=False, report_to=[], disable_tqdm=True,
                 activation_checkpointing=False, max_length=48, assistant_only_loss=True)
trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(base), args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=AutoTokenizer.from_pretrained(base),
                     peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
print(json.dumps({"train_runtime": trainer.train().metrics["train_runtime"]}))
"""

CONFIG = """name: overhead
model: {{base: "builtin:tiny-qwen3"}}
stages:
  - name: sft
    kind: sft
    data: "builtin:arithmetic-chat"
    lora: {{r: 16, alpha: 32}}
    train: {{steps: {steps}, batch_size: {batch}, lr: 3.0e-3, logging_steps: 10, max_length: 48, precision: fp32}}
"""


def run_bare(steps: int, batch: int, where: Path) -> tuple[float, float]:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", BARE, str(steps), str(batch), str(where)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    return json.loads(out.stdout.strip().splitlines()[-1])["train_runtime"], wall


def run_cockpit(steps: int, batch: int, where: Path) -> tuple[float, float]:
    from core.runs import list_runs
    from core.store import RunStore

    config = where / "overhead.yaml"
    config.write_text(CONFIG.format(steps=steps, batch=batch))
    start = time.monotonic()
    subprocess.run([str(ROOT / ".venv" / "bin" / "cockpit"), "run", str(config), "--batch", "--runs-dir",
                    str(where / "runs")], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    with RunStore(list_runs(where / "runs")[-1].db) as store:
        return store.final_metrics("sft")["train_runtime"], wall


def run_pair(n: int, opts: argparse.Namespace, where: Path) -> dict:
    """One bare run and one cockpit run, bare first in even pairs, cockpit first in odd ones."""
    sides = {"bare": run_bare, "cockpit": run_cockpit}
    order = ["bare", "cockpit"] if n % 2 == 0 else ["cockpit", "bare"]
    result = {}
    for side in order:
        folder = where / f"{n}-{side}"
        folder.mkdir()
        result[side] = sides[side](opts.steps, opts.batch_size, folder)
    return {"order": order, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per step")
    parser.add_argument("--pairs", type=int, default=5, help="bare/cockpit pairs, alternating which goes first")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"{'pair':6}{'first':9}{'bare ms/step':>14}{'cockpit ms/step':>17}{'ratio':>8}"
          f"{'bare s':>9}{'cockpit s':>11}{'ratio':>8}", flush=True)
    step_ratios, wall_ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(opts.pairs):
            pair = run_pair(n, opts, Path(tmp))
            (bare_train, bare_wall), (cockpit_train, cockpit_wall) = pair["bare"], pair["cockpit"]
            step_ratios.append(cockpit_train / bare_train)
            wall_ratios.append(cockpit_wall / bare_wall)
            print(f"{n + 1:<6}{pair['order'][0]:9}{1000 * bare_train / opts.steps:14.1f}"
                  f"{1000 * cockpit_train / opts.steps:17.1f}{step_ratios[-1]:8.3f}{bare_wall:9.1f}"
                  f"{cockpit_wall:11.1f}{wall_ratios[-1]:8.3f}", flush=True)
    print(f"per-step ratio cockpit/bare: median {statistics.median(step_ratios):.3f}, "
          f"range {min(step_ratios):.3f}-{max(step_ratios):.3f}")
    print(f"end-to-end ratio cockpit/bare: median {statistics.median(wall_ratios):.3f}, "
          f"range {min(wall_ratios):.3f}-{max(wall_ratios):.3f}")


if __name__ == "__main__":
    main()
