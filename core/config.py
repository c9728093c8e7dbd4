"""Curriculum config: pydantic models, YAML loading with `extends:`, errors located by line."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.datafiles import DataError, read_rows
from core.errors import ConfigError, ConfigErrors
from core.kinds import EVAL_METRICS, EVAL_ROWS, KIND_NAMES, KIND_OPTIONS, KINDS, data_rows, readers_of
from core.overrides import with_overrides
from core.yaml_lines import LocatedYaml, load_located

BUILTIN_DATA = ("arithmetic-text", "arithmetic-chat", "arithmetic-preference", "arithmetic-prompts",
                "arithmetic-eval")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(Strict):
    """Where the first stage's weights come from and how they are loaded."""

    base: str = Field("builtin:tiny-qwen3", description="builtin:tiny-qwen3, a hub id or a local folder")
    backend: Literal["auto", "hf", "unsloth"] = Field("auto", description="unsloth only on CUDA when installed")
    trust_remote_code: bool = Field(False, description="run model code shipped with the checkpoint")


class LoraSpec(Strict):
    """A LoRA adapter trained on top of the stage's starting model."""

    r: int = Field(16, gt=0, description="rank")
    alpha: int = Field(32, gt=0, description="scaling numerator (lora_alpha)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: Union[str, list[str]] = Field("all-linear", description="modules to adapt")
    use_dora: bool = Field(False, description="weight-decomposed LoRA")


class TrainSpec(Strict):
    """Optimisation settings; names follow transformers.TrainingArguments where they exist."""

    steps: int = Field(100, gt=0, description="optimizer steps (max_steps)")
    batch_size: int = Field(8, gt=0, description="per-device train batch size")
    grad_accum: int = Field(1, gt=0, description="gradient accumulation steps")
    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    warmup_steps: int = Field(0, ge=0)
    scheduler: str = Field("cosine", description="lr_scheduler_type")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="cosine floor as a fraction of lr")
    weight_decay: float = Field(0.0, ge=0.0)
    adam_beta2: float = Field(0.999, gt=0.0, lt=1.0)
    max_length: int = Field(128, gt=0, description="tokens per training sequence")
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps; 0 = only the final one")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 where supported")
    nproc: int = Field(1, gt=0, description="processes (torchrun) for this stage")
    threads: Optional[int] = Field(None, gt=0, description="CPU threads per worker process (torch, OMP, MKL); "
                                   "unset = $OMP_NUM_THREADS if set, else every core the worker may use")
    beta: Optional[float] = Field(None, ge=0.0, description="DPO/IPO temperature or GRPO KL weight")
    num_generations: int = Field(4, gt=1, description="GRPO samples per prompt")
    max_completion_length: int = Field(16, gt=0, description="GRPO tokens per sample")
    temperature: float = Field(1.0, gt=0.0, description="GRPO sampling temperature")


class DataSpec(Strict):
    """A data source: builtin:<name>, a .jsonl or .txt file."""

    source: str
    on_error: Literal["fail", "skip"] = Field("fail", description="what to do with a broken JSONL row")
    limit: Optional[int] = Field(None, gt=0, description="use at most this many rows")


class EvalSpec(Strict):
    """Held-out evaluation after a stage: eval/accuracy (generation) and eval/perplexity."""

    data: Union[str, DataSpec] = "builtin:arithmetic-eval"
    metrics: list[Literal["accuracy", "perplexity"]] = Field(default_factory=lambda: ["accuracy", "perplexity"])
    max_samples: int = Field(500, gt=0)
    max_new_tokens: int = Field(12, gt=0)
    batch_size: int = Field(128, gt=0)
    format: Literal["auto", "chat", "text"] = Field(
        "auto", description="prompt as a chat turn or as raw text; auto = text for pretrain, chat otherwise")


class OnPolicySpec(Strict):
    """Mine the starting policy's own samples before training (scored by the stage's `rewards`).

    dpo: pairs of the policy's best and worst answer to the same prompt (its own likely mistakes);
    grpo: only the prompts the policy sometimes solves (where group-relative advantages are non-zero).
    """

    prompts: int = Field(1024, gt=0, description="data rows to sample on")
    samples: int = Field(8, gt=1, description="samples per prompt")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    max_new_tokens: int = Field(16, gt=0, description="tokens per sample")
    batch_size: int = Field(256, gt=0, description="prompts per generate call")


class Rule(Strict):
    """One gate rule on a metric: absolute bounds, or no regression (or a rise) against an earlier stage."""

    min: Optional[float] = None
    max: Optional[float] = None
    min_of: Optional[str] = Field(None, description="at least the value the named stage reached")
    max_of: Optional[str] = Field(None, description="at most the value the named stage reached")
    tolerance: float = Field(0.0, ge=0.0, description="slack allowed on min_of / max_of")
    gain: float = Field(0.0, ge=0.0, description="rise demanded on min_of (fall on max_of) against the named stage")

    @model_validator(mode="after")
    def _has_a_bound(self) -> "Rule":
        if all(v is None for v in (self.min, self.max, self.min_of, self.max_of)):
            raise ValueError("a rule needs at least one of min, max, min_of, max_of")
        return self

    @model_validator(mode="after")
    def _gain_is_relative(self) -> "Rule":
        if self.gain and self.tolerance:
            raise ValueError("gain and tolerance pull the same threshold opposite ways: set one of them")
        if self.gain and self.min_of is None and self.max_of is None:
            raise ValueError("gain is measured against a stage: it needs min_of or max_of")
        return self


class GateSpec(Strict):
    """The promotion gate at the end of a stage."""

    require: dict[str, Rule] = Field(default_factory=dict, description="metric name -> rule")
    approval: Literal["auto", "manual"] = "auto"


class Defaults(Strict):
    """Settings every stage inherits unless it sets its own."""

    lora: Optional[LoraSpec] = None
    train: dict[str, Any] = Field(default_factory=dict)
    eval: Optional[EvalSpec] = None


class StageSpec(Strict):
    """One stage of the curriculum."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal[KIND_NAMES] = Field(description="what the stage does (core.kinds)")
    from_: Optional[str] = Field(None, alias="from", description="stage whose output this one starts from")
    data: Union[None, str, DataSpec] = None
    lora: Union[None, bool, LoraSpec] = Field(None, description="false = full fine-tuning")
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: Union[None, bool, EvalSpec] = None
    loss: str = Field("sigmoid", description="DPO loss_type: sigmoid, ipo, hinge, robust, ...")
    rewards: list[str] = Field(default_factory=lambda: ["exact_match"],
                               description="reward names (GRPO's rewards; what on_policy scores samples with)")
    on_policy: Optional[OnPolicySpec] = Field(None, description="dpo/grpo: mine the starting policy's samples first")
    gate: Optional[GateSpec] = None


class Curriculum(Strict):
    """A whole curriculum file."""

    name: str
    extends: Optional[str] = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    defaults: Defaults = Field(default_factory=Defaults)
    stall_timeout_s: float = Field(600.0, gt=0, description="a stage with no new step for this long is stalled")
    max_oom_retries: int = Field(2, ge=0)
    seed: Optional[int] = Field(None, description="train.seed of every stage whose train: and defaults.train: set none")
    stages: list[StageSpec] = Field(min_length=1)

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def index(self, name: str) -> int:
        return [s.name for s in self.stages].index(name)


def load_curriculum(path: str | Path, overrides: Iterable[str] = ()) -> Curriculum:
    """Read, merge (`extends:`), apply `--set KEY=VALUE` overrides, validate and resolve a curriculum file."""
    path = Path(path)
    located = with_overrides(_load_with_parents(path, seen=()), overrides)
    try:
        cur = Curriculum.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigErrors([_locate(located, e) for e in exc.errors()]) from None
    _apply_defaults(cur, located)
    _check_semantics(cur, located, base_dir=path.parent)
    _absolutize_data(cur, path.parent)
    return cur


def _load_with_parents(path: Path, seen: tuple) -> LocatedYaml:
    if path.resolve() in seen:
        raise ConfigError("extends forms a cycle", str(path), None, "extends")
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
        if stage.lora is None and KINDS[stage.kind].adapter:
            stage.lora = cur.defaults.lora
        elif stage.lora is True:
            stage.lora = cur.defaults.lora or LoraSpec()
        elif stage.lora is False:
            stage.lora = None
        if stage.eval is None:
            stage.eval = cur.defaults.eval
        elif stage.eval is True:
            stage.eval = cur.defaults.eval or EvalSpec()
        elif stage.eval is False:
            stage.eval = None


def _check_semantics(cur: Curriculum, located: LocatedYaml, base_dir: Path) -> None:
    errors: list[ConfigError] = _check_model(cur, located, base_dir)
    names: list[str] = []
    for i, stage in enumerate(cur.stages):
        here = ("stages", i)
        if stage.name in names:
            errors.append(_err(located, here + ("name",), f"duplicate stage name {stage.name!r}"))
        errors += _check_from(stage, i, names, located)
        errors += _check_options(stage, here, located)
        errors += _check_data(stage, here, located, base_dir)
        errors += _check_gate(stage, here, names, located)
        errors += _check_gate_metrics(cur, stage, here, names, located)
        names.append(stage.name)
    if errors:
        raise ConfigErrors(errors)


def _check_model(cur: Curriculum, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    """A local model folder must exist and hold safetensors weights (pickle weights can run code)."""
    base = cur.model.base
    if base.startswith("builtin:"):
        if base != "builtin:tiny-qwen3":
            return [_err(located, ("model", "base"), f"unknown builtin model {base!r}; known: builtin:tiny-qwen3")]
        return []
    folder = Path(base) if Path(base).is_absolute() else base_dir / base
    looks_local = base.startswith((".", "/", "~")) or folder.exists()
    if not looks_local:
        return []  # a hub id: resolved by the worker (offline machines fail there with a clear message)
    if not folder.is_dir():
        return [_err(located, ("model", "base"), f"model folder {base!r} not found")]
    if not list(folder.glob("*.safetensors")) and not (folder / "adapter_model.safetensors").exists():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        return [_err(located, ("model", "base"), f"model folder {base!r} has {what}; "
                     "convert it to safetensors (pickle files can execute code when loaded)")]
    cur.model.base = str(folder.resolve())
    return []


def _check_from(stage: StageSpec, i: int, earlier: list[str], located: LocatedYaml) -> list[ConfigError]:
    if stage.from_ is None:
        if i == 0 and KINDS[stage.kind].needs_parent:
            return [_err(located, ("stages", i, "kind"), f"a {stage.kind} stage needs an earlier stage to start from")]
        stage.from_ = earlier[-1] if earlier else None
        return []
    if stage.from_ in earlier:
        return []
    what = "a later stage" if stage.from_ == stage.name or stage.from_ in _all_names(located) else "no stage"
    return [_err(located, ("stages", i, "from"), f"{stage.from_!r} names {what}; from: must name an earlier stage")]


def _all_names(located: LocatedYaml) -> list[str]:
    return [s.get("name") for s in located.data.get("stages", []) if isinstance(s, dict)]


def _check_options(stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """Kind-specific fields (loss, rewards, on_policy) written on a kind that does not read them."""
    raw = located.data["stages"][here[1]]
    return [_err(located, here + (opt,), f"{opt} is read by {' and '.join(readers_of(opt))} stages, not {stage.kind}")
            for opt in KIND_OPTIONS if opt in raw and opt not in KINDS[stage.kind].options]


def _check_data(stage: StageSpec, here: tuple, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    if KINDS[stage.kind].rows and stage.data is None:
        return [_err(located, here + ("kind",), f"a {stage.kind} stage needs data:")]
    eval_data = stage.eval.data if isinstance(stage.eval, EvalSpec) else None
    uses = (("data", stage.data, data_rows(stage.kind, bool(stage.on_policy))), ("eval", eval_data, EVAL_ROWS))
    errors = []
    for key, spec, use in uses:
        source = spec.source if isinstance(spec, DataSpec) else spec
        if not isinstance(source, str):
            continue
        if source.startswith("builtin:"):
            if source.split(":", 1)[1] not in BUILTIN_DATA:
                errors.append(_err(located, here + (key,), f"unknown builtin data {source!r}; "
                                   f"known: {', '.join('builtin:' + n for n in BUILTIN_DATA)}"))
            continue
        file = Path(source) if Path(source).is_absolute() else base_dir / source
        if not file.is_file():
            errors.append(_err(located, here + (key,), f"data file {source!r} not found (looked in {file})"))
            continue
        on_error = spec.on_error if isinstance(spec, DataSpec) else "fail"
        try:
            read_rows(file, use, on_error)
        except DataError as exc:
            exc.field = ".".join(str(p) for p in here + (key,))
            errors.append(exc)
    return errors


def _check_gate(stage: StageSpec, here: tuple, earlier: list[str], located: LocatedYaml) -> list[ConfigError]:
    if stage.gate is None:
        return []
    errors = []
    for metric, rule in stage.gate.require.items():
        for key in ("min_of", "max_of"):
            ref = getattr(rule, key)
            if ref is not None and ref not in earlier:
                errors.append(_err(located, here + ("gate", "require", metric, key),
                                   f"{ref!r} is not an earlier stage"))
    return errors


def _check_gate_metrics(cur: Curriculum, stage: StageSpec, here: tuple, earlier: list[str],
                        located: LocatedYaml) -> list[ConfigError]:
    """Every gated metric is one the stage records (and, for min_of/max_of, the earlier stage named too)."""
    if stage.gate is None:
        return []
    errors = []
    for metric, rule in stage.gate.require.items():
        refs = [stage] + [cur.stage(r) for r in (rule.min_of, rule.max_of) if r in earlier]
        problem = next((p for p in (_unrecorded(s, metric) for s in refs) if p), None)
        if problem:
            errors.append(_err(located, here + ("gate", "require", metric), problem))
    return errors


def _unrecorded(stage: StageSpec, metric: str) -> str | None:
    """Why `stage` never records `metric` (with a "did you mean"), or None when it can."""
    kind, on_policy = KINDS[stage.kind], bool(stage.on_policy)
    if metric in EVAL_METRICS:
        evaluates = stage.eval if isinstance(stage.eval, EvalSpec) else EvalSpec() if kind.always_evaluates else None
        if evaluates is None:
            return f"stage {stage.name!r} has no eval: to record it"
        if metric.split("/", 1)[1] not in evaluates.metrics:
            return f"stage {stage.name!r} evaluates only {', '.join(evaluates.metrics)}"
        return None
    if kind.emits(metric, on_policy):
        return None
    hit = difflib.get_close_matches(metric, kind.metric_names(on_policy), n=1)
    hint = f" (did you mean {hit[0]!r}?)" if hit else f"; it records {', '.join(kind.metric_names(on_policy))}"
    return f"a {stage.kind} stage never records {metric!r}{hint}"


def _err(located: LocatedYaml, loc: tuple, message: str) -> ConfigError:
    file, line = located.where(loc)
    return ConfigError(message, file, line, ".".join(str(p) for p in loc))


def _absolutize_data(cur: Curriculum, config_dir: Path) -> None:
    """Make file data sources absolute, so the resolved config works from the run directory."""
    def fix(spec):
        if isinstance(spec, DataSpec):
            spec.source = fix(spec.source)
            return spec
        if isinstance(spec, str) and not spec.startswith("builtin:"):
            return str((config_dir / spec).resolve())
        return spec

    for stage in cur.stages:
        stage.data = fix(stage.data)
        if isinstance(stage.eval, EvalSpec):
            stage.eval.data = fix(stage.eval.data)


def dump_resolved(cur: Curriculum) -> str:
    """The resolved curriculum as YAML (what actually runs, defaults applied)."""
    return yaml.safe_dump(cur.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False)
