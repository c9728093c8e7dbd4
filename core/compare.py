"""Compare 2-6 targets on one prompt set through the chat worker: outputs side by side, metrics per target."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.chat import ChatWorker, checked
from core.config import EvalSpec
from core.datafiles import read_rows
from core.errors import UserError
from core.store import RunStore
from core.targets import Target


@dataclass(frozen=True)
class PromptSet:
    """The prompts all targets answer: explicit rows (a file) or an eval spec's data; how to run them."""

    spec: dict
    rows: list[dict] | None
    source: str


@dataclass(frozen=True)
class CompareResult:
    targets: list[Target]
    rows: list[dict]               # {"prompt", "answer"} as shown
    results: list[dict]            # per target: outputs, accuracy, perplexity, reward, mean_length, ...
    recorded: list[float | None]   # the eval/accuracy each target's stage recorded, when it has one
    seconds: float
    bases_loaded: int
    source: str

    def to_json(self) -> dict:
        return {"source": self.source, "seconds": round(self.seconds, 3), "bases_loaded": self.bases_loaded,
                "targets": [t.to_json() | {"recorded_accuracy": r} for t, r in zip(self.targets, self.recorded)],
                "metrics": [{"target": t.label, **{k: v for k, v in res.items() if k != "outputs"}}
                            for t, res in zip(self.targets, self.results)],
                "prompts": [row | {"outputs": {t.label: res["outputs"][i] for t, res in zip(self.targets, self.results)}}
                            for i, row in enumerate(self.rows)]}


def prompt_set(targets: list[Target], prompts_file: Path | None = None, limit: int | None = None,
               max_new_tokens: int | None = None) -> PromptSet:
    """A prompts file (.jsonl with prompt/messages and optional answer, or .txt), else the stages' eval set."""
    if prompts_file is not None:
        rows = [_prompt_row(r) for r in read_rows(prompts_file, "sft", limit=limit)]
        spec = EvalSpec(max_new_tokens=max_new_tokens or 64).model_dump(mode="json")
        return PromptSet(spec | {"max_samples": len(rows)}, rows, str(prompts_file))
    spec = stage_eval_spec(targets)
    spec["max_samples"] = min(spec["max_samples"], limit or spec["max_samples"])
    spec["max_new_tokens"] = max_new_tokens or spec["max_new_tokens"]
    data = spec["data"] if isinstance(spec["data"], str) else spec["data"]["source"]
    return PromptSet(spec, None, f"{data} ({spec['max_samples']} samples)")


def _prompt_row(row: dict) -> dict:
    return {"prompt": row["text"]} if set(row) == {"text"} else row


def stage_eval_spec(targets: list[Target]) -> dict:
    """The eval spec of the first target's stage that has one (then any stage of its run), else the default."""
    for spec_path in _spec_files(targets):
        try:
            ev = json.loads(spec_path.read_text())["stage"].get("eval")
        except (OSError, ValueError, KeyError):
            continue
        if ev:
            return EvalSpec.model_validate(ev if isinstance(ev, dict) else {}).model_dump(mode="json")
    return EvalSpec().model_dump(mode="json")


def _spec_files(targets: list[Target]) -> list[Path]:
    own = [t.run_paths.stage_spec(t.stage) for t in targets if t.run_paths and t.stage]
    runs = {t.run: t.run_paths for t in targets if t.run_paths}
    return own + [p for paths in runs.values() for p in sorted(paths.root.glob("stages/*/spec.json"))]


def run_compare(worker: ChatWorker, targets: list[Target], prompts: PromptSet,
                on_progress: Callable[[str, int, int], None] | None = None) -> CompareResult:
    """Every target on the same prompts, one loaded base shared by the adapters that apply on it."""
    started = time.perf_counter()
    rid = worker.request("compare", targets=[t.to_json() for t in targets], eval=prompts.spec, rows=prompts.rows)
    for event in worker.events(rid):
        if event["event"] == "progress" and on_progress:
            on_progress(event["target"], event["done"], event["total"])
    result = checked(event, "compared")["result"]
    return CompareResult(targets, result["rows"], result["results"], [recorded_accuracy(t) for t in targets],
                         time.perf_counter() - started, result["bases_loaded"], prompts.source)


def recorded_accuracy(target: Target) -> float | None:
    """The eval/accuracy the run store holds for a stage's final output (None for checkpoints and folders)."""
    if not target.run_paths or not target.stage or target.step is not None:
        return None
    with RunStore(target.run_paths.db) as store:
        return store.final_metrics(target.stage).get("eval/accuracy")


def check_prompts_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"prompts file {path} not found")
    return path
