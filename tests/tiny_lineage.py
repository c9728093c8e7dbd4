"""A tiny run directory with a real lineage, built in seconds: builtin base, sft adapter with two
checkpoints, dpo adapter chained on sft. Adapters are random LoRA (non-zero B) so outputs differ.

Layout follows the contract: stages/<stage>/final/ (+cockpit.json), checkpoints/checkpoint-<step>/
(+trainer_state.json), spec.json with input_model. The sft stage records eval results the way a
training worker does (workers.heldout.evaluate on the live PeftModel).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import EvalSpec
from core.store import RunStore

EVAL = {"data": "builtin:arithmetic-eval", "metrics": ["accuracy", "perplexity"], "max_samples": 24,
        "max_new_tokens": 8, "batch_size": 8, "format": "auto"}
STAGES = [{"name": "sft", "kind": "sft"}, {"name": "dpo", "kind": "dpo", "from": "sft"}]


def build_lineage(root: Path) -> Path:
    """Create the run under `root` (its folder name is the run id) and return it."""
    from workers import builtin

    root.mkdir(parents=True)
    meta = {"id": root.name, "name": "tiny", "status": "completed",
            "config": {"model": {"base": builtin.BUILTIN_MODEL, "trust_remote_code": False}}}
    RunStore.create(root / "run.db", meta, STAGES).close()
    base = builtin.materialise(root)
    sft_final = root / "stages" / "sft" / "final"
    _write_spec(root, "sft", "sft", None)
    for step, seed in ((2, 1), (4, 2)):
        _save_adapter(base, root / "stages" / "sft" / "checkpoints" / f"checkpoint-{step}", seed, step)
    model = _save_adapter(base, sft_final, 3, 6, meta={"type": "adapter", "base": str(base), "stage": "sft", "step": 6})
    _record_eval(root, "sft", model, base, 6)
    _write_spec(root, "dpo", "dpo", str(sft_final))
    _save_adapter(sft_final, root / "stages" / "dpo" / "final", 4, 3,
                  meta={"type": "adapter", "base": str(sft_final), "stage": "dpo", "step": 3})
    with RunStore(root / "run.db") as store:
        for stage in ("sft", "dpo"):
            store.update_stage(stage, status="completed")
    return root


def _save_adapter(base: Path, folder: Path, seed: int, step: int, meta: dict | None = None):
    """A random LoRA on `base` (merged first when it is itself an adapter), saved with the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model

    from workers.modeling import load_full, load_tokenizer

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                        task_type="CAUSAL_LM")
    model = get_peft_model(load_full(str(base)), config)
    model.save_pretrained(folder)
    load_tokenizer(str(base)).save_pretrained(folder)
    if meta:
        (folder / "cockpit.json").write_text(json.dumps(meta))
    else:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return model


def _write_spec(root: Path, name: str, kind: str, input_model: str | None) -> None:
    folder = root / "stages" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"run_dir": str(root), "db": str(root / "run.db"), "input_model": input_model,
            "stage": {"name": name, "kind": kind, "eval": EVAL}, "model": {"base": "builtin:tiny-qwen3"}}
    (folder / "spec.json").write_text(json.dumps(spec))


def _record_eval(root: Path, stage: str, model, base: Path, step: int) -> None:
    """What workers.common.record_eval does at the end of a stage."""
    from workers.heldout import evaluate
    from workers.modeling import load_tokenizer

    results = evaluate(model, load_tokenizer(str(base)), EvalSpec.model_validate(EVAL), "sft")
    with RunStore(root / "run.db") as store:
        for name, (value, data) in results.items():
            store.append("eval_result", stage=stage, step=step, name=name, value=value, now=True, **data)


def pickle_only_folder(root: Path) -> Path:
    """A model folder whose weights are only a pickle (must be refused)."""
    folder = root / "pickled"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    return folder


_BUILT: dict[str, object] = {}


def shared_lineage(tmp_path_factory) -> Path:
    """One lineage per test process, whichever module asks first."""
    if "runs" not in _BUILT:
        runs = tmp_path_factory.mktemp("chat") / "runs"
        build_lineage(runs / "20250101-000000-tiny")
        _BUILT["runs"] = runs
    return _BUILT["runs"]


def shared_worker(config):
    """One chat worker per test process (starting one costs seconds of imports), closed at the end."""
    from core.chat_client import ChatWorker

    if "worker" not in _BUILT:
        _BUILT["worker"] = ChatWorker().start()
        config.add_cleanup(_BUILT["worker"].close)
    return _BUILT["worker"]


@pytest.fixture(scope="module", name="runs")
def lineage_runs(tmp_path_factory):
    """The shared tiny lineage's runs directory (built once per session)."""
    return shared_lineage(tmp_path_factory)


@pytest.fixture(scope="module", name="worker")
def chat_worker(request):
    """The shared, already warm chat worker."""
    return shared_worker(request.config)
