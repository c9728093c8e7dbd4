"""Cockpit overhead: the same SFT work run by a bare TRL script and by `cockpit run --batch`, side by side.

    .venv/bin/python bench/overhead.py [--steps 200] [--batch-size 32]

Both train builtin:tiny-qwen3 with LoRA r=16 on builtin:arithmetic-chat for `--steps` steps, no
checkpoints, no eval. Per-step time comes from each run's `train_runtime`; end-to-end is the wall
time of each process (imports, model creation, supervisor, store included).
"""
from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        bare_train, bare_wall = run_bare(opts.steps, opts.batch_size, Path(tmp) / "bare")
        cockpit_train, cockpit_wall = run_cockpit(opts.steps, opts.batch_size, Path(tmp))
    print(f"{'':12}{'per step (ms)':>15}{'end to end (s)':>16}")
    print(f"{'bare TRL':12}{1000 * bare_train / opts.steps:15.1f}{bare_wall:16.1f}")
    print(f"{'cockpit':12}{1000 * cockpit_train / opts.steps:15.1f}{cockpit_wall:16.1f}")
    print(f"{'ratio':12}{cockpit_train / bare_train:15.3f}{cockpit_wall / bare_wall:16.3f}")


if __name__ == "__main__":
    main()
