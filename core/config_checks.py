"""The checks a curriculum passes after its schema: stage order, kind options, data, gates, the model folder."""
from __future__ import annotations

import difflib
from pathlib import Path

from core.config import BUILTIN_DATA, BUILTIN_MODELS, Curriculum, DataSpec, DistillSpec, EvalSpec, StageSpec
from core.dag import BASE
from core.datafiles import DataError, read_rows
from core.errors import ConfigError, ConfigErrors
from core.kinds import CHAT_ROWS, DISTILL_TRAINERS, EVAL_METRICS, KIND_OPTIONS, KINDS, readers_of
from core.registry import ENVIRONMENTS, REWARDS, TOOLS, name_problem, requirement_problem
from core.trl_settings import setting_problem
from core.yaml_lines import LocatedYaml


PHASED_KINDS = ("pretrain", "sft")


def check_semantics(cur: Curriculum, located: LocatedYaml, base_dir: Path) -> None:
    """Every check below; all errors found are raised together."""
    errors: list[ConfigError] = _check_model(cur, located, base_dir)
    names: list[str] = []
    for i, stage in enumerate(cur.stages):
        here = ("stages", i)
        if stage.name in names:
            errors.append(_err(located, here + ("name",), f"duplicate stage name {stage.name!r}"))
        if stage.name == BASE:
            errors.append(_err(located, here + ("name",), f"{BASE!r} names the model a curriculum starts from "
                               "(from: base); call the stage something else"))
        outputs = [n for n in names if KINDS[cur.stage(n).kind].outputs]
        errors += _check_route(cur, stage, i, names, located)
        errors += _check_from(stage, i, names, outputs, located)
        errors += _check_distill(stage, i, names, outputs, located, base_dir)
        errors += _check_options(stage, here, located)
        errors += _check_functions(stage, here, located, base_dir)
        errors += _check_win_rate(stage, here, located, base_dir)
        errors += _check_trl(stage, here, located)
        errors += _check_quantized_training(cur, stage, here, located)
        errors += _check_toolchains(stage, here, located)
        errors += _check_data(stage, here, located, base_dir)
        errors += _check_gate(stage, here, names, located)
        errors += _check_gate_metrics(cur, stage, here, names, located)
        errors += _check_launch(cur, stage, here, located)
        errors += _check_phases(stage, here, located)
        errors += _check_strategy(cur, stage, here, located)
        names.append(stage.name)
    if errors:
        raise ConfigErrors(errors)


def _check_model(cur: Curriculum, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    """A local model folder must exist and hold safetensors weights (pickle weights can run code)."""
    base = cur.model.base
    if base.startswith("builtin:"):
        if base not in BUILTIN_MODELS:
            return [_err(located, ("model", "base"), f"unknown builtin model {base!r}; known: "
                         f"{', '.join(BUILTIN_MODELS)}")]
        return []
    folder = Path(base) if Path(base).is_absolute() else base_dir / base
    looks_local = base.startswith((".", "/", "~")) or folder.exists()
    if not looks_local:
        return []  # a hub id: resolved by the worker (offline machines fail there with a clear message)
    problem = _folder_problem(base, folder)
    if problem:
        return [_err(located, ("model", "base"), problem)]
    cur.model.base = str(folder.resolve())
    return []


def _folder_problem(name: str, folder: Path) -> str | None:
    """Why `folder` is no model to load: missing, or without safetensors weights (pickle weights can run code)."""
    if not folder.is_dir():
        return f"model folder {name!r} not found"
    if not list(folder.glob("*.safetensors")) and not (folder / "adapter_model.safetensors").exists():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        return (f"model folder {name!r} has {what}; convert it to safetensors (pickle files can execute code when "
                "loaded)")
    return None


def _check_from(stage: StageSpec, i: int, earlier: list[str], outputs: list[str],
                located: LocatedYaml) -> list[ConfigError]:
    """`from:` names an earlier stage that writes a model, or base; unset, the last such stage (else base)."""
    if stage.from_ is None:
        if not outputs and KINDS[stage.kind].needs_parent:
            return [_err(located, ("stages", i, "kind"), f"a {stage.kind} stage needs an earlier stage to start from")]
        stage.from_ = outputs[-1] if outputs else None
        return []
    if stage.from_ in earlier and stage.from_ not in outputs:
        return [_err(located, ("stages", i, "from"), f"{stage.from_!r} writes no model to start from (it only "
                     "evaluates or routes)")]
    if stage.from_ == BASE:
        needs = KINDS[stage.kind].needs_parent
        return [_err(located, ("stages", i, "from"), f"a {stage.kind} stage needs a trained stage to start from, "
                     "not base")] if needs else []
    if stage.from_ in earlier:
        return []
    what = "a later stage" if stage.from_ == stage.name or stage.from_ in _all_names(located) else "no stage"
    return [_err(located, ("stages", i, "from"), f"{stage.from_!r} names {what}; from: must name an earlier stage "
                 "or base")]


def _check_route(cur: Curriculum, stage: StageSpec, i: int, earlier: list[str],
                 located: LocatedYaml) -> list[ConfigError]:
    """A route stage's experts are earlier stages that each train a LoRA adapter on one same parent; the route
    stage starts from that parent."""
    if stage.kind != "route":
        return []
    here = ("stages", i)
    if stage.route is None:
        return [_err(located, here + ("kind",), "a route stage needs route: {experts: [stage, stage, ...]}")]
    errors, parents = [], {}
    for j, name in enumerate(stage.route.experts):
        where = here + ("route", "experts", j)
        if name not in earlier:
            hit = difflib.get_close_matches(name, earlier, n=1)
            errors.append(_err(located, where, f"expert {name!r} names no earlier stage"
                               + (f" (did you mean {hit[0]!r}?)" if hit else "")))
        elif not (KINDS[cur.stage(name).kind].adapter and cur.stage(name).lora):
            errors.append(_err(located, where, f"expert {name!r} trains no LoRA adapter (a {cur.stage(name).kind} "
                               "stage" + (" with lora: false" if KINDS[cur.stage(name).kind].adapter else "") + ")"))
        else:
            parents.setdefault(cur.stage(name).from_ or BASE, []).append(name)
    if len(parents) > 1:
        split = "; ".join(f"{', '.join(names)} from {parent}" for parent, names in parents.items())
        errors.append(_err(located, here + ("route", "experts"), f"a router needs experts on one parent ({split})"))
    if errors or not parents:
        return errors
    (common,) = parents
    if stage.from_ is not None and stage.from_ != common:
        return [_err(located, here + ("from",), f"a route stage starts from its experts' parent {common!r}, not "
                     f"{stage.from_!r}")]
    stage.from_ = common
    return []


DISTILL_READS = {"teacher": ("jsd", "gkd"), "beta": ("jsd", "gkd"), "lmbda": ("gkd",), "seq_kd": ("gkd",),
                 "feedback": ("sdpo",)}  # distill: field -> the methods that read it


def _check_distill(stage: StageSpec, i: int, earlier: list[str], outputs: list[str], located: LocatedYaml,
                   base_dir: Path) -> list[ConfigError]:
    """A distill stage's method reads every field it is given (sdpo: rewards:, and no teacher, the student
    teaches itself); jsd and gkd have a teacher (`_check_teacher`)."""
    if stage.kind != "distill":
        return []
    here, raw = ("stages", i), located.data["stages"][i]
    spec = stage.distill = stage.distill or DistillSpec()
    errors = [_err(located, here + ("distill", key), f"{key} is read by {' and '.join(methods)} distillation, not "
                   f"{spec.method}" + (" (its student teaches itself)" if key == "teacher" else ""))
              for key, methods in DISTILL_READS.items() if key in (raw.get("distill") or {})
              and spec.method not in methods]
    if "rewards" in raw and spec.method != "sdpo":
        errors.append(_err(located, here + ("rewards",), f"rewards are read by sdpo distillation, not {spec.method}"))
    if "beta" in (raw.get("train") or {}):
        errors.append(_err(located, here + ("train", "beta"), "a distill stage's divergence is set by distill.beta, "
                           "not train.beta"))
    if spec.method == "sdpo":
        return errors
    return errors + _check_teacher(stage, here, earlier, outputs, located, base_dir)


def _check_teacher(stage: StageSpec, here: tuple, earlier: list[str], outputs: list[str], located: LocatedYaml,
                   base_dir: Path) -> list[ConfigError]:
    """`distill.teacher` names an earlier stage that writes a model, base, or a model folder (made absolute)."""
    spec, where = stage.distill, here + ("distill", "teacher")
    teacher, wanted = spec.teacher, "teacher: must name an earlier stage, base or a model folder"
    if teacher is None:
        at = here + ("distill",) if "distill" in located.data["stages"][here[1]] else here + ("kind",)
        return [_err(located, at, f"a {spec.method} distill stage needs distill.teacher: an earlier stage, base or "
                     "a model folder")]
    if teacher == BASE or teacher in outputs:
        return []
    if teacher in earlier:
        return [_err(located, where, f"{teacher!r} only evaluates: it writes no model to teach with")]
    if teacher in _all_names(located):
        return [_err(located, where, f"{teacher!r} names {'this' if teacher == stage.name else 'a later'} stage; "
                     f"{wanted}")]
    folder = Path(teacher).expanduser()
    folder = folder if folder.is_absolute() else base_dir / folder
    if teacher.startswith((".", "/", "~")) or "/" in teacher or folder.exists():
        problem = _folder_problem(teacher, folder)
        spec.teacher = spec.teacher if problem else str(folder.resolve())
        return [_err(located, where, problem)] if problem else []
    hit = difflib.get_close_matches(teacher, outputs + [BASE], n=1)
    return [_err(located, where, f"{teacher!r} names no stage" + (f" (did you mean {hit[0]!r}?)" if hit else "")
                 + f"; {wanted}")]


def _all_names(located: LocatedYaml) -> list[str]:
    return [s.get("name") for s in located.data.get("stages", []) if isinstance(s, dict)]


def _check_options(stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """Kind-specific fields (loss, rewards, on_policy) written on a kind that does not read them."""
    raw = located.data["stages"][here[1]]
    return [_err(located, here + (opt,), f"{opt} is read by {' and '.join(readers_of(opt))} stages, not {stage.kind}")
            for opt in KIND_OPTIONS if opt in raw and opt not in KINDS[stage.kind].options]


def _check_functions(stage: StageSpec, here: tuple, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    """Every reward, tool and environment name resolves now (registry, named file, installed module), not when
    the stage starts."""
    options = KINDS[stage.kind].options
    uses = [(here + (key, i), name, registry, what)
            for key, registry, what in (("rewards", REWARDS, "reward"), ("tools", TOOLS, "tool")) if key in options
            for i, name in enumerate(getattr(stage, key))]
    if stage.environment and "environment" in options:
        uses.append((here + ("environment",), stage.environment, ENVIRONMENTS, "environment"))
    if isinstance(stage.eval, EvalSpec):
        uses += [(here + ("eval", "tools", i), name, TOOLS, "tool") for i, name in enumerate(stage.eval.tools)]
    return [_err(located, where, problem) for where, name, registry, what in uses
            if (problem := name_problem(name, registry, what, base_dir))]


def _check_win_rate(stage: StageSpec, here: tuple, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    """win_rate compares a training stage with the model it started from, scored by a judge that resolves."""
    ev = stage.evaluation()
    if ev is None or "win_rate" not in ev.metrics:
        return []
    if not KINDS[stage.kind].trains:
        return [_err(located, here + ("eval", "metrics"), "win_rate compares a training stage's answers with those "
                     f"of the model it started from; {stage.kind} stages do not train")]
    if ev.judge is None:
        return [_err(located, here + ("eval",), "win_rate needs eval.judge: the reward that scores both answers "
                     "(e.g. exact_match)")]
    problem = name_problem(ev.judge, REWARDS, "reward", base_dir)
    return [_err(located, here + ("eval", "judge"), problem)] if problem else []


def _check_toolchains(stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """A registry reward that compiles or runs code in another language has its toolchain on PATH here."""
    if "rewards" not in KINDS[stage.kind].options:
        return []
    return [_err(located, here + ("rewards", i), problem) for i, name in enumerate(stage.rewards)
            if name in REWARDS and (problem := requirement_problem(REWARDS[name]))]


def _check_quantized_training(cur: Curriculum, stage: StageSpec, here: tuple,
                              located: LocatedYaml) -> list[ConfigError]:
    """Quantized weights cannot take gradient updates: a training stage on them trains an adapter."""
    if cur.model.quantization == "none" or not KINDS[stage.kind].trains or stage.lora:
        return []
    return [_err(located, here + ("lora",), f"model.quantization {cur.model.quantization} trains only through "
                 "an adapter: give this stage lora: (or defaults.lora), or load the model unquantized")]


def _check_trl(stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """Every `trl:` key is a field of the stage's TRL config class that the cockpit does not set itself."""
    raw = located.data["stages"][here[1]].get("trl") or {}
    errors = []
    for key in stage.trl:
        problem = _trl_problem(stage, key)
        if problem:
            where = here + ("trl", key) if key in raw else ("defaults", "trl", key)
            errors.append(_err(located, where, problem))
    return errors


def _trl_problem(stage: StageSpec, key: str) -> str | None:
    """Why `key` cannot be set through `trl:`; a distill stage's keys are fields of its method's TRL config
    (DistillationConfig, GKDConfig, SDPOConfig) that neither train: nor distill: sets."""
    trainer = DISTILL_TRAINERS[stage.distill.method] if stage.kind == "distill" else KINDS[stage.kind].trainer
    return setting_problem(stage.kind, trainer, key)


def _check_data(stage: StageSpec, here: tuple, located: LocatedYaml, base_dir: Path) -> list[ConfigError]:
    if KINDS[stage.kind].rows and stage.data is None:
        return [_err(located, here + ("kind",), f"a {stage.kind} stage needs data:")]
    ev = stage.eval if isinstance(stage.eval, EvalSpec) else None
    uses = ((("data",), stage.data, stage.row_fields()), (("eval", "data"), ev and ev.data, ev and ev.row_fields()),
            (("eval", "prompts"), ev and ev.prompts, CHAT_ROWS))
    errors = []
    for key, spec, use in uses:
        source = spec.source if isinstance(spec, DataSpec) else spec
        if not isinstance(source, str):
            continue
        if source.startswith("builtin:"):
            if source.split(":", 1)[1] not in BUILTIN_DATA:
                errors.append(_err(located, here + key, f"unknown builtin data {source!r}; "
                                   f"known: {', '.join('builtin:' + n for n in BUILTIN_DATA)}"))
            continue
        file = Path(source) if Path(source).is_absolute() else base_dir / source
        if not file.is_file():
            errors.append(_err(located, here + key, f"data file {source!r} not found (looked in {file})"))
            continue
        on_error, columns = (spec.on_error, spec.columns) if isinstance(spec, DataSpec) else ("fail", {})
        try:
            read_rows(file, use, on_error, columns=columns)
        except DataError as exc:
            exc.field = ".".join(str(p) for p in here + key)
            errors.append(exc)
    return errors


def _check_gate(stage: StageSpec, here: tuple, earlier: list[str], located: LocatedYaml) -> list[ConfigError]:
    if stage.gate is None:
        return []
    errors = []
    for metric, rule in stage.gate.require.items():
        for key in ("min_of", "max_of"):
            errors += [_err(located, here + ("gate", "require", metric, key), f"{ref!r} is not an earlier stage")
                       for ref in rule.references(key) if ref not in earlier]
    return errors


def _check_gate_metrics(cur: Curriculum, stage: StageSpec, here: tuple, earlier: list[str],
                        located: LocatedYaml) -> list[ConfigError]:
    """Every gated metric is one the stage records (and, for min_of/max_of, the earlier stage named too)."""
    if stage.gate is None:
        return []
    errors = []
    for metric, rule in stage.gate.require.items():
        refs = [stage] + [cur.stage(r) for r in rule.references("min_of") + rule.references("max_of") if r in earlier]
        problem = next((p for p in (_unrecorded(s, metric) for s in refs) if p), None)
        if problem:
            errors.append(_err(located, here + ("gate", "require", metric), problem))
    return errors


def _unrecorded(stage: StageSpec, metric: str) -> str | None:
    """Why `stage` never records `metric` (with a "did you mean"), or None when it can."""
    kind, on_policy = KINDS[stage.kind], bool(stage.on_policy)
    if metric in EVAL_METRICS:
        evaluates = stage.evaluation()
        if evaluates is None:
            return f"stage {stage.name!r} has no eval: to record it"
        if metric == "eval/tool_calls":
            return None if evaluates.tools and "accuracy" in evaluates.metrics else \
                f"stage {stage.name!r} records eval/tool_calls only with eval: {{tools: [...]}} measuring accuracy"
        if metric.split("/", 1)[1] not in evaluates.metrics:
            return f"stage {stage.name!r} evaluates only {', '.join(evaluates.metrics)}"
        return None
    if kind.emits(metric, on_policy):
        return None
    hit = difflib.get_close_matches(metric, kind.metric_names(on_policy), n=1)
    hint = f" (did you mean {hit[0]!r}?)" if hit else f"; it records {', '.join(kind.metric_names(on_policy))}"
    return f"a {stage.kind} stage never records {metric!r}{hint}"


def _check_phases(stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """Context phases cut the training sequences of the kinds that train on whole sequences."""
    if stage.train.phases and stage.kind not in PHASED_KINDS:
        return [_err(located, here + ("train", "max_length"), f"context phases (max_length as a list) are for "
                     f"{' and '.join(PHASED_KINDS)} stages, not {stage.kind}")]
    return []


def _check_strategy(cur: Curriculum, stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """FSDP shards full-precision weights across several processes of the hf backend."""
    if stage.train.strategy != "fsdp" or not KINDS[stage.kind].trains:
        return []
    where = here + ("train", "strategy")
    nodes = {"slurm": stage.launch.slurm.nodes, "skypilot": stage.launch.skypilot.num_nodes}.get(stage.launch.via, 1)
    if stage.train.nproc == 1 and nodes == 1:
        return [_err(located, where, "fsdp shards the model across processes: set train.nproc (GPUs per node) "
                     "above 1, or run the stage on several nodes")]
    if cur.model.backend == "unsloth":
        return [_err(located, where, "the unsloth backend trains on one GPU: use model.backend: hf for fsdp")]
    if cur.model.quantization != "none":
        return [_err(located, where, f"fsdp shards unquantized weights: load the model with quantization: none "
                     f"(not {cur.model.quantization})")]
    return []


def _check_launch(cur: Curriculum, stage: StageSpec, here: tuple, located: LocatedYaml) -> list[ConfigError]:
    """A SkyPilot stage names its bucket; a stage elsewhere cannot read a model a SkyPilot stage left in one."""
    launch = _launch_loc(located, here[1])
    if stage.launch.via == "skypilot":
        if not stage.launch.skypilot.bucket:
            return [_err(located, launch + ("via",), "a SkyPilot stage needs launch.skypilot.bucket (s3://..., "
                         "gs://...): its checkpoints and final model are kept there")]
        return []
    remote = [n for n in stage.needs() if n in cur.names() and cur.stage(n).launch.via == "skypilot"]
    return [_err(located, launch + ("via",), f"{remote[0]!r} runs on SkyPilot and leaves its model in its bucket; "
                 f"run {stage.name!r} there too (launch: {{via: skypilot}})")] if remote else []


def check_launches(cur: Curriculum, located: LocatedYaml) -> None:
    """Each SkyPilot stage's task as SkyPilot itself reads it (its schema, resources, accelerators); slow
    (SkyPilot's own interpreter starts), so `check` and `run` ask for it, not every load."""
    from core.skypilot_job import placeholder_task, validate
    from core.slurm_job import SubmitError

    sky = [i for i, stage in enumerate(cur.stages) if stage.launch.via == "skypilot"]
    if not sky:
        return
    python = cur.stages[sky[0]].launch.skypilot.python
    try:
        verdicts = validate([placeholder_task(cur.stages[i]) for i in sky], python)
    except SubmitError as exc:
        raise ConfigErrors([_err(located, _launch_loc(located, sky[0]) + ("via",), str(exc))]) from None
    errors = {str(e): e for e in (_err(located, _launch_loc(located, i) + ("skypilot",),
                                       f"SkyPilot rejects the task: {v['error']}")
                                  for i, v in zip(sky, verdicts) if "error" in v)}  # once per place written
    if errors:
        raise ConfigErrors(list(errors.values()))


def _launch_loc(located: LocatedYaml, i: int) -> tuple:
    """Where stage i's launch is written: on the stage, else in defaults."""
    return ("stages", i, "launch") if "launch" in located.data["stages"][i] else ("defaults", "launch")


def _err(located: LocatedYaml, loc: tuple, message: str) -> ConfigError:
    file, line = located.where(loc)
    return ConfigError(message, file, line, ".".join(str(p) for p in loc))
