"""Chat and compare targets: `RUN:STAGE`, `RUN:STAGE@STEP`, `RUN:base` or a model folder, resolved to paths.

Resolution only reads folders and JSON (no torch); the chat worker loads the weights and refuses
pickle-only folders. An adapter target carries the folder it applies on (`base`), so intermediate
checkpoints (whose adapter_config only names the original base) apply on the right model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from core.checkpoints import CHECKPOINT, complete_checkpoints
from core.dag import BASE
from core.errors import UserError
from core.runs import RunPaths, find_run
from core.store import RunStore

MAX_COMPARED = 6
TRAINER_PICKLES = ("optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state.pth")


@dataclass(frozen=True)
class Target:
    """One model to chat with or compare: a full folder, or an adapter folder applied on `base`."""

    label: str
    path: str
    base: str | None = None          # the model folder an adapter applies on (None: full model)
    run: str | None = None           # run directory, when the target belongs to a run
    stage: str | None = None
    step: int | None = None
    kind: str | None = None          # the stage's kind (decides eval prompt format)
    trust_remote_code: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def run_paths(self) -> RunPaths | None:
        return RunPaths(Path(self.run)) if self.run else None


def resolve_target(text: str, directory: Path) -> Target:
    """A TARGET string as typed on the command line; a clear UserError when it names nothing."""
    folder = Path(text).expanduser()
    if folder.is_dir():
        return folder_target(folder)
    if ":" not in text:
        raise UserError(f"target {text!r} is neither a folder nor RUN:STAGE[@STEP] (e.g. latest:sft, latest:sft@200)")
    run_ref, rest = text.split(":", 1)
    paths = find_run(directory, run_ref)
    stage, _, step = rest.partition("@")
    if step and not step.isdigit():
        raise UserError(f"target {text!r}: step must be a number (RUN:STAGE@STEP)")
    return stage_target(paths, stage, int(step) if step else None)


def folder_target(folder: Path) -> Target:
    """A plain local model or adapter folder (its cockpit.json, if any, names an adapter's base)."""
    if not any((folder / name).is_file() for name in ("config.json", "adapter_config.json")) and not is_routed(folder):
        raise UserError(f"{folder} is not a model folder (no config.json or adapter_config.json)")
    refuse_pickle_only(folder)
    meta = _read_json(folder / "cockpit.json")
    return Target(label=folder.name, path=str(folder.resolve()), base=meta.get("base"), stage=meta.get("stage"),
                  step=meta.get("step"))


def is_routed(folder: Path) -> bool:
    """A route stage's output: experts behind a router, described by its cockpit.json."""
    return _read_json(folder / "cockpit.json").get("type") == "routed"


def refuse_pickle_only(folder: Path) -> None:
    """Fail before a worker is spawned when the weights are only pickles (the worker checks again on load)."""
    weights = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth")
               and p.name not in TRAINER_PICKLES]
    if weights and not any(name.endswith(".safetensors") for name in weights):
        raise UserError(f"{folder} holds only pickle weights ({', '.join(sorted(weights)[:3])}); "
                        "convert them to safetensors first")


def stage_target(paths: RunPaths, stage: str, step: int | None = None) -> Target:
    """A run's base (`base`), a stage's final output, or one of its complete checkpoints."""
    config = _run_config(paths)
    trust = bool(config.get("model", {}).get("trust_remote_code"))
    if stage == BASE and stage not in _stage_kinds(paths):
        return Target(BASE, str(_run_base(paths, config)), run=str(paths.root), stage=BASE,
                      trust_remote_code=trust)
    kind = _stage_kinds(paths).get(stage)
    if kind is None:
        names = ", ".join([BASE, *_stage_kinds(paths)])
        raise UserError(f"run {paths.id} has no stage {stage!r} (targets: {names})")
    if kind == "route" and step is not None:  # its checkpoints are the router's training, not a model
        raise UserError(f"{stage!r} is a route stage: chat and compare take its final output ({paths.id}:{stage})")
    folder = _stage_folder(paths, stage, step)
    label = stage if step is None else f"{stage}@{step}"
    refuse_pickle_only(folder)
    base = _stage_base(paths, stage, config) if (folder / "adapter_config.json").is_file() else None
    return Target(label, str(folder), base, str(paths.root), stage, step, kind, trust)


def _stage_folder(paths: RunPaths, stage: str, step: int | None) -> Path:
    if step is None:
        final = paths.stage_final(stage)
        if not final.is_dir():
            raise UserError(f"stage {stage!r} of run {paths.id} has no final output yet"
                            + _steps_hint(paths, stage))
        return final
    folder = paths.stage_checkpoints(stage) / f"checkpoint-{step}"
    if folder not in complete_checkpoints(paths.stage_checkpoints(stage)):
        raise UserError(f"stage {stage!r} of run {paths.id} has no complete checkpoint at step {step}"
                        + _steps_hint(paths, stage))
    return folder


def _steps_hint(paths: RunPaths, stage: str) -> str:
    steps = checkpoint_steps(paths, stage)
    return f" (checkpoints: {', '.join(map(str, steps))})" if steps else ""


def checkpoint_steps(paths: RunPaths, stage: str) -> list[int]:
    """Steps of a stage's complete intermediate checkpoints, lowest first."""
    return [int(CHECKPOINT.match(p.name).group(1)) for p in complete_checkpoints(paths.stage_checkpoints(stage))]


def _stage_base(paths: RunPaths, stage: str, config: dict) -> str:
    """The folder a stage's adapters apply on: final/cockpit.json, else spec.json's input model, else the run's base."""
    meta = _read_json(paths.stage_final(stage) / "cockpit.json")
    if meta.get("base"):
        return meta["base"]
    spec = _read_json(paths.stage_spec(stage))
    if spec.get("input_model"):
        return spec["input_model"]
    return str(_run_base(paths, config))


def _run_base(paths: RunPaths, config: dict) -> Path:
    from core.config import BUILTIN_MODELS  # pydantic: only when a target is resolved, not for `--help`

    base = config.get("model", {}).get("base", BUILTIN_MODELS[0])
    folder = paths.base if base in BUILTIN_MODELS else Path(base)
    if not folder.is_dir():
        raise UserError(f"base model of run {paths.id} is not on disk ({folder}); it appears once the first "
                        "stage starts")
    return folder.resolve()


def run_targets(paths: RunPaths) -> list[Target]:
    """Everything of a run one can chat with: its base, each stage's checkpoints, then its final output."""
    found = []
    for make in [lambda: stage_target(paths, BASE)] + [
            lambda s=s, step=step: stage_target(paths, s, step)
            for s, kind in _stage_kinds(paths).items()
            for step in [*(checkpoint_steps(paths, s) if kind != "route" else []), None]]:
        try:
            found.append(make())
        except UserError:
            continue  # not on disk (yet)
    return found


def lineage_targets(paths: RunPaths, limit: int = MAX_COMPARED) -> list[Target]:
    """The run's base and every stage's final output, in curriculum order (the last `limit`)."""
    finals = [t for t in run_targets(paths) if t.step is None]
    return finals[-limit:]


def _stage_kinds(paths: RunPaths) -> dict[str, str]:
    """Stage name -> kind, in curriculum order: the store's rows, then stage folders it does not list."""
    with RunStore(paths.db) as store:
        kinds = {s["name"]: s["kind"] for s in store.stages()}
    for spec in sorted(paths.root.glob("stages/*/spec.json")):
        kinds.setdefault(spec.parent.name, _read_json(spec).get("stage", {}).get("kind"))
    return kinds


def _run_config(paths: RunPaths) -> dict:
    with RunStore(paths.db) as store:
        return store.get_meta("config") or {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def resolve_targets(texts: list[str], directory: Path) -> list[Target]:
    """Several TARGETs for compare; a single run reference (no ':') means that run's lineage."""
    if len(texts) == 1 and ":" not in texts[0] and not Path(texts[0]).is_dir():
        targets = lineage_targets(find_run(directory, texts[0]))
    else:
        targets = [resolve_target(t, directory) for t in texts]
    if not 2 <= len(targets) <= MAX_COMPARED:
        raise UserError(f"compare takes 2 to {MAX_COMPARED} targets (got {len(targets)})")
    return targets
