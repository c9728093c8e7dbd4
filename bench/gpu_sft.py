"""One LoRA SFT stage on a random-init real-size model, on a GPU: tokens/s and peak memory per variant.

    python bench/gpu_sft.py [--shape qwen3-1.7b] [--steps 30] [--batch-size 8] [--seq 1024]
                            [--variants bare-hf-bf16 cockpit-hf-bf16 cockpit-hf-4bit ...] [--json OUT]

A variant is RUNNER-BACKEND-WEIGHTS: `bare` is a plain TRL (or unsloth) script, `cockpit` is
`cockpit run --batch` of a one-stage curriculum; backend `hf` or `unsloth`; weights `bf16` or `4bit`
(bitsandbytes NF4 on hf, unsloth's own on unsloth). Every variant trains the same folder (a Qwen3 of the
shape's size, random weights, the builtin digit tokenizer) on the same rows (chat turns of ~--seq tokens),
LoRA r=16 on all linear layers, gradient checkpointing, bf16. Tokens/s is the median over the logs after
the first (TRL's `num_tokens` between logs, the cockpit's `train/tokens_per_s`; unsloth's trainer logs no
`num_tokens`), and over the whole run (the rows' tokens / train_runtime, first steps included); peak is
torch.cuda.max_memory_allocated. Needs CUDA (`--shape tiny` tries it on CPU). Unsloth variants need unsloth
importable; COCKPIT_BENCH_UNSLOTH_PATH, when set, replaces PYTHONPATH for them (unsloth pins older
transformers and trl than the project, so it may live in a site of its own).
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
sys.path.insert(0, str(ROOT))
SHAPES = {  # the published configs' sizes (Qwen3-1.7B, Qwen3-8B)
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=512, tie_word_embeddings=True),  # tries the script on CPU
}
DEFAULT_VARIANTS = ["bare-hf-bf16", "cockpit-hf-bf16", "cockpit-hf-4bit", "bare-unsloth-bf16",
                    "cockpit-unsloth-bf16", "cockpit-unsloth-4bit", "bare-hf-bf16", "cockpit-hf-bf16"]

MAKE_MODEL = """
import sys, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
from workers.builtin import build_tokenizer
folder, shape = sys.argv[1], __import__("json").loads(sys.argv[2])
tok = build_tokenizer()
config = Qwen3Config(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                     max_position_embeddings=40960, rope_theta=1e6, rms_norm_eps=1e-6, **shape)
torch.manual_seed(0)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(folder); tok.save_pretrained(folder)
print(sum(p.numel() for p in model.parameters()))
"""

BARE = """
import json, statistics, sys, time
backend, weights, folder, data, steps, batch, seq = sys.argv[1:8]
if backend == "unsloth":
    from unsloth import FastLanguageModel
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback, TrainingArguments
from trl import SFTConfig, SFTTrainer
from peft import LoraConfig
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
peft = None
if backend == "unsloth":
    model, tok = FastLanguageModel.from_pretrained(folder, max_seq_length=int(seq), dtype=torch.bfloat16,
                                                   load_in_4bit=weights == "4bit")
    model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, target_modules=TARGETS,
                                             use_gradient_checkpointing="unsloth")
else:
    quant = dict(quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                 bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16), device_map={"": 0})
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, **(quant if weights == "4bit" else {}))
    tok = AutoTokenizer.from_pretrained(folder)
    peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
rates, last = [], None
class Rate(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        global last
        if logs and "num_tokens" in logs:
            now = (time.monotonic(), logs["num_tokens"])
            if last: rates.append((now[1] - last[1]) / (now[0] - last[0]))
            last = now
args = SFTConfig(output_dir="/tmp/bare-out", max_steps=int(steps), per_device_train_batch_size=int(batch),
                 learning_rate=1e-4, logging_steps=5, save_strategy="no", bf16=True, report_to=[],
                 use_cpu=not torch.cuda.is_available(),
                 max_length=int(seq), disable_tqdm=True,
                 **{"activation_checkpointing" if hasattr(TrainingArguments, "activation_checkpointing")
                    else "gradient_checkpointing": backend != "unsloth"})
trainer = SFTTrainer(model=model, args=args, processing_class=tok, peft_config=peft, callbacks=[Rate()],
                     train_dataset=load_dataset("json", data_files=data, split="train"))
metrics = trainer.train().metrics
print(json.dumps({"tokens_per_s": statistics.median(rates) if rates else None,
                  "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                  "train_runtime": metrics["train_runtime"]}))
"""

CONFIG = """name: gpu-{variant}
model: {{base: "{folder}", backend: {backend}, quantization: {quant}, dtype: bf16, gradient_checkpointing: true}}
stages:
  - name: sft
    kind: sft
    data: "{data}"
    lora: {{r: 16, alpha: 32}}
    train: {{steps: {steps}, batch_size: {batch}, lr: 1.0e-4, logging_steps: 5, max_length: {seq}, precision: bf16}}
"""


def make_rows(path: Path, folder: Path, seq: int, count: int) -> int:
    """Chat rows whose answer is a run of equations, about `seq` digit tokens each; the tokens a run of
    all of them trains (each row cut at `seq`, as the trainers do)."""
    import random

    from transformers import AutoTokenizer

    rng, tokenizer, tokens = random.Random(0), AutoTokenizer.from_pretrained(folder), 0
    with path.open("w") as out:
        for _ in range(count):
            eqs = " ".join(f"{a}+{b}={a + b}" for a, b in ((rng.randrange(100), rng.randrange(100))
                                                          for _ in range(seq // 9 - 4)))
            messages = [{"role": "user", "content": "Add these up."}, {"role": "assistant", "content": eqs}]
            out.write(json.dumps({"messages": messages}) + "\n")
            tokens += min(seq, len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]))
    return tokens


def env_for(backend: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    site = env.get("COCKPIT_BENCH_UNSLOTH_PATH") if backend == "unsloth" else None
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), site or env.get("PYTHONPATH", "")) if p)
    return env


def run_bare(backend: str, weights: str, folder: Path, data: Path, opts, timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-c", BARE, backend, weights, str(folder), str(data), str(opts.steps),
                          str(opts.batch_size), str(opts.seq)], cwd=ROOT, env=env_for(backend),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        return {"error": out.stderr[-1500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cockpit(variant: str, backend: str, weights: str, folder: Path, data: Path, opts, timeout: float,
                where: Path) -> dict:
    config = where / f"{variant}.yaml"
    config.write_text(CONFIG.format(variant=variant, folder=folder, data=data, backend=backend, steps=opts.steps,
                                    quant="4bit" if weights == "4bit" else "none", batch=opts.batch_size,
                                    seq=opts.seq))
    runs = where / f"runs-{variant}-{time.monotonic_ns()}"
    cli = [sys.executable, "-m", "cli.main", "--runs-dir", str(runs)]
    out = subprocess.run([*cli, "run", str(config), "--batch"], cwd=ROOT, env=env_for(backend),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        shown = subprocess.run([*cli, "show", "latest"], cwd=ROOT, env=env_for(backend), capture_output=True, text=True)
        return {"error": (out.stdout + out.stderr + shown.stdout)[-1500:]}
    from core.runs import list_runs
    from core.store import RunStore

    with RunStore(list_runs(runs)[-1].db) as store:
        events = store.events(kinds=["metric"], stage="sft")
        final = store.final_metrics("sft")
    rates = [e.value for e in events if e.name == "train/tokens_per_s"]
    peaks = [e.value for e in events if e.name == "gpu/peak_memory_gb"]
    return {"tokens_per_s": statistics.median(rates) if rates else None, "peak_memory_gb": max(peaks, default=None),
            "train_runtime": final.get("train_runtime")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="qwen3-1.7b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--budget", type=float, default=480, help="seconds; variants that would start later are skipped")
    parser.add_argument("--json", type=Path, help="write the results here as well (after every variant)")
    opts = parser.parse_args()
    deadline = time.monotonic() + opts.budget
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        folder, data = where / opts.shape, where / "rows.jsonl"
        made = subprocess.run([sys.executable, "-c", MAKE_MODEL, str(folder), json.dumps(SHAPES[opts.shape])],
                              cwd=ROOT, env=env_for("hf"), capture_output=True, text=True, check=True)
        print(f"{opts.shape}: {int(made.stdout.split()[-1]):,} parameters, random init, bf16", flush=True)
        tokens = make_rows(data, folder, opts.seq, opts.steps * opts.batch_size)
        for variant in opts.variants:
            left = deadline - time.monotonic()
            if left < 30:
                results.append({"variant": variant, "error": "skipped: out of budget"})
                continue
            runner, backend, weights = variant.split("-")
            start = time.monotonic()
            try:
                row = (run_bare(backend, weights, folder, data, opts, left) if runner == "bare" else
                       run_cockpit(variant, backend, weights, folder, data, opts, left, where))
            except subprocess.TimeoutExpired:
                row = {"error": "timed out"}
            if row.get("train_runtime"):
                row["run_tokens_per_s"] = tokens / row["train_runtime"]
            results.append({"variant": variant, **row, "wall_s": time.monotonic() - start})
            print(json.dumps(results[-1]), flush=True)
            if opts.json:
                opts.json.write_text(json.dumps(results, indent=1))
    print(table(results, opts))


def table(results: list[dict], opts) -> str:
    lines = [f"{opts.shape}, LoRA r=16, batch {opts.batch_size} x {opts.seq} tokens, {opts.steps} steps",
             "| variant | tokens/s (logs) | tokens/s (run) | peak GiB | train s | wall s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:80]} | | | | |")
            continue
        logs = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        lines.append(f"| {r['variant']} | {logs} | {r.get('run_tokens_per_s', 0):,.0f} | {r['peak_memory_gb'] or 0:.1f} "
                     f"| {r['train_runtime'] or 0:.1f} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
