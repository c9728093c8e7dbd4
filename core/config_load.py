"""Loading a curriculum file: `extends:` parents, `--set` overrides, validation with errors located by line."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.config import SAFE_NAME, Curriculum, DataSpec, EvalSpec, LoraSpec, TrainSpec
from core.config_checks import check_launches, check_semantics
from core.errors import ConfigError, ConfigErrors
from core.kinds import KINDS
from core.overrides import with_overrides
from core.registry import ENVIRONMENTS, REWARDS, TOOLS, absolute_function
from core.yaml_lines import LocatedYaml, load_located

MAX_STAGES = 128
MAX_EXTENDS = 8


def load_curriculum(path: str | Path, overrides: Iterable[str] = (), launches: bool = False) -> Curriculum:
    """Read, merge (`extends:`), apply `--set KEY=VALUE` overrides, validate and resolve a curriculum file;
    `launches`: also have SkyPilot validate its stages' tasks (slow)."""
    path = Path(path)
    located = with_overrides(_load_with_parents(path, seen=()), overrides)
    _check_stage_count(located)
    try:
        cur = Curriculum.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigErrors([_locate(located, e) for e in exc.errors()]) from None
    _apply_defaults(cur, located)
    check_semantics(cur, located, base_dir=path.parent)
    _absolutize_paths(cur, path.parent)
    if launches:
        check_launches(cur, located)
    return cur


def _check_stage_count(located: LocatedYaml) -> None:
    """Refuse an absurd stage list before validating it item by item."""
    stages = located.data.get("stages")
    if isinstance(stages, list) and len(stages) > MAX_STAGES:
        file, line = located.where(("stages",))
        raise ConfigError(f"{len(stages):,} stages; the limit is {MAX_STAGES}", file, line, "stages")


def _load_with_parents(path: Path, seen: tuple) -> LocatedYaml:
    if path.resolve() in seen:
        raise ConfigError("extends forms a cycle", str(path), None, "extends")
    if len(seen) >= MAX_EXTENDS:
        raise ConfigError(f"extends goes deeper than {MAX_EXTENDS} files", str(path), None, "extends")
    located = load_located(path)
    parent = located.data.get("extends") if isinstance(located.data, dict) else None
    if not parent:
        return located
    parent_path = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
    if not parent_path.exists():
        raise ConfigError(f"parent file {parent!r} not found", str(path), located.line_of(("extends",)), "extends")
    return located.merged_over(_load_with_parents(parent_path, seen + (path.resolve(),)))


def _locate(located: LocatedYaml, err: dict) -> ConfigError:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "bool", "DataSpec", "LoraSpec", "EvalSpec"))))
    file, line = located.where(loc)
    field = ".".join(str(p) for p in loc) or "<top>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key" + _did_you_mean(loc)
    elif err["type"] == "literal_error":
        msg = f"{msg} (got {err.get('input')!r})"
    elif err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == SAFE_NAME:
        msg = (f"{err.get('input')!r} is not a safe name: 1-64 letters, digits, '_', '.' or '-', "
               "starting with a letter or digit")
    return ConfigError(msg, file, line, field)


def _did_you_mean(loc: tuple) -> str:
    """' (did you mean 'x'?)' when an unknown key is close to a key allowed where it sits."""
    types: list = [Curriculum]
    for part in loc[:-1]:
        types = [t for parent in types for child in _child_types(parent, part) for t in _union_members(child)]
    names = [f.alias or n for t in types if _is_model(t) for n, f in t.model_fields.items()]
    hit = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean {hit[0]!r}?)" if hit else ""


def _child_types(parent, part) -> list:
    if _is_model(parent):
        return [f.annotation for n, f in parent.model_fields.items() if part in (n, f.alias)]
    args = get_args(parent)
    if get_origin(parent) is list and isinstance(part, int):
        return [args[0]]
    return [args[1]] if get_origin(parent) is dict else []


def _union_members(annotation) -> list:
    if get_origin(annotation) is Union:
        return [m for arg in get_args(annotation) for m in _union_members(arg)]
    return [annotation]


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _apply_defaults(cur: Curriculum, located: LocatedYaml) -> None:
    """Fill each stage from `defaults` (and the top-level `seed`) where the stage is silent."""
    inherited = ({"seed": cur.seed} if cur.seed is not None else {}) | cur.defaults.train
    for i, stage in enumerate(cur.stages):
        raw = located.data["stages"][i]
        if inherited:
            merged = {**inherited, **(raw.get("train") or {})}
            try:
                stage.train = TrainSpec.model_validate(merged)
            except ValidationError as exc:
                raise ConfigErrors([_locate(located, {**e, "loc": ("defaults", "train", *e["loc"])})
                                    for e in exc.errors()]) from None
        if KINDS[stage.kind].trains:
            stage.trl = {**cur.defaults.trl, **stage.trl}
        if stage.lora is None and KINDS[stage.kind].adapter:
            stage.lora = cur.defaults.lora
        elif stage.lora is True:
            stage.lora = cur.defaults.lora or LoraSpec()
        elif stage.lora is False:
            stage.lora = None
        if "launch" not in raw:
            stage.launch = cur.defaults.launch
        if stage.eval is None:
            stage.eval = cur.defaults.eval
        elif stage.eval is True:
            stage.eval = cur.defaults.eval or EvalSpec()
        elif stage.eval is False:
            stage.eval = None


def _absolutize_paths(cur: Curriculum, config_dir: Path) -> None:
    """Make data files and reward and tool files absolute, so the resolved config works from the run directory."""
    def fix(spec):
        if isinstance(spec, DataSpec):
            spec.source = fix(spec.source)
            return spec
        if isinstance(spec, str) and not spec.startswith("builtin:"):
            return str((config_dir / spec).resolve())
        return spec

    for stage in cur.stages:
        stage.data = fix(stage.data)
        stage.launch.skypilot.workdir = fix(stage.launch.skypilot.workdir)
        if isinstance(stage.eval, EvalSpec):
            stage.eval.data, stage.eval.prompts = fix(stage.eval.data), fix(stage.eval.prompts)
        stage.rewards = [absolute_function(name, REWARDS, config_dir) for name in stage.rewards]
        stage.tools = [absolute_function(name, TOOLS, config_dir) for name in stage.tools]
        stage.environment = stage.environment and absolute_function(stage.environment, ENVIRONMENTS, config_dir)
        if isinstance(stage.eval, EvalSpec):
            stage.eval.tools = [absolute_function(name, TOOLS, config_dir) for name in stage.eval.tools]
            stage.eval.judge = stage.eval.judge and absolute_function(stage.eval.judge, REWARDS, config_dir)
