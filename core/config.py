"""Curriculum config: the pydantic models of a curriculum file (loading: core/config_load.py)."""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.dag import BASE
from core.kinds import CHAT_ROWS, EVAL_ROWS, KIND_NAMES, KINDS, PROMPT_ROWS, data_rows
from core.registry import ENVIRONMENTS, reward_columns

REFUSAL_PATTERNS = (r"\bI (?:can(?:no|')t|won't|will not|am not able to|'m not able to)\b", r"\bI(?:'m| am) sorry\b",
                    r"\bas an AI\b", r"\bI must decline\b", r"\b(?:cannot|can't) (?:help|assist) with\b")
BUILTIN_MODELS = ("builtin:tiny-qwen3", "builtin:tiny-qwen3-tools", "builtin:tiny-qwen3-moe",
                  "builtin:tiny-llama", "builtin:tiny-gpt-oss")  # workers/builtin.py builds them
BUILTIN_DATA = ("arithmetic-text", "arithmetic-chat", "arithmetic-chat-verbose", "arithmetic-preference",
                "arithmetic-prompts", "arithmetic-eval", "arithmetic-tool-chat", "arithmetic-tool-prompts",
                "arithmetic-tool-eval")


# Stage and run names become directory names: no separators, no leading dot, bounded length.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(Strict):
    """Where the first stage's weights come from and how they are loaded."""

    base: str = Field("builtin:tiny-qwen3", description="builtin:tiny-qwen3, builtin:tiny-qwen3-tools (Qwen3's "
                      "own chat template, tool calls), builtin:tiny-qwen3-moe (fused experts), builtin:tiny-llama "
                      "(LLaMA, GQA), builtin:tiny-gpt-oss (GPT-OSS, Harmony format), a hub id or a local folder")
    backend: Literal["auto", "hf", "unsloth"] = Field("auto", description="unsloth only on CUDA when installed")
    trust_remote_code: bool = Field(False, description="run model code shipped with the checkpoint")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="weights as loaded and as saved by merge; auto: bf16 on a GPU that has it, else fp32")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="bitsandbytes weights (NF4 with double quantization for 4bit); CUDA only; "
        "training stages then need an adapter")
    attn_implementation: Optional[str] = Field(None, description="eager, sdpa, flash_attention_2, flex_attention; "
                                               "unset = transformers' choice")
    gradient_checkpointing: Optional[bool] = Field(None, description="recompute activations to save memory; "
                                                   "unset = on with a GPU, off on CPU")
    init: Literal["pretrained", "random"] = Field("pretrained", description="random: base's architecture "
                                                  "(with config: overrides), freshly initialised, to pretrain")
    config: dict[str, Any] = Field(default_factory=dict, description="model config overrides for init: random, "
                                   "e.g. {num_hidden_layers: 32, hidden_size: 4096}")

    @model_validator(mode="after")
    def _overrides_need_random_init(self) -> "ModelSpec":
        if self.config and self.init != "random":
            raise ValueError("config: overrides change the architecture: they need init: random")
        return self


class LoraSpec(Strict):
    """A LoRA adapter trained on top of the stage's starting model."""

    r: int = Field(16, gt=0, description="rank")
    alpha: int = Field(32, gt=0, description="scaling numerator (lora_alpha)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: Union[str, list[str]] = Field("all-linear", description="modules to adapt (all-linear: every "
                                                  "linear layer and, on a MoE model, its fused expert weights)")
    target_parameters: Optional[list[str]] = Field(None, description="fused weights to adapt, e.g. "
                                                   "mlp.experts.gate_up_proj (unset: a MoE model's experts wherever "
                                                   "target_modules asks for the MLP; [] = none)")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (peft cannot put it on fused expert weights)")
    require_experts: bool = Field(False, description="a MoE model whose experts get no adapter fails the stage "
                                  "(else a warning)")


class ContextPhase(Strict):
    """One context-length phase of a stage: `steps` optimizer steps on sequences of up to `max_length` tokens."""

    steps: int = Field(gt=0)
    max_length: int = Field(gt=0)


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
    max_length: int = Field(128, gt=0, description="tokens per training sequence; pretrain and sft: or a list of "
                            "context phases [{steps: 300, max_length: 512}, {steps: 300, max_length: 1024}] (one "
                            "optimizer and LR schedule across them; steps: their sum)")
    phases: list[ContextPhase] = Field(default_factory=list, description="the context phases, when max_length is "
                                       "written as a list (then max_length is the longest)")
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps; 0 = only the final one")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 where supported")
    nproc: int = Field(1, gt=0, description="processes (torchrun) for this stage")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="how several processes share training: ddp (each "
                                             "holds the whole model) or fsdp (weights, gradients and optimizer "
                                             "state sharded across them: accelerate's FSDP2, GPUs only)")
    threads: Optional[int] = Field(None, gt=0, description="CPU threads per worker process (torch, OMP, MKL); "
                                   "unset = $OMP_NUM_THREADS if set, else every core the worker may use")
    beta: Optional[float] = Field(None, ge=0.0, description="DPO/IPO temperature or GRPO KL weight")
    num_generations: int = Field(4, gt=1, description="GRPO samples per prompt")
    max_completion_length: int = Field(16, gt=0, description="GRPO tokens per sample")
    temperature: float = Field(1.0, gt=0.0, description="GRPO sampling temperature")

    @model_validator(mode="before")
    @classmethod
    def _phases_from_max_length(cls, data: Any) -> Any:
        """max_length: [{steps, max_length}, ...] -> phases, max_length the longest, steps their sum."""
        if not isinstance(data, dict) or not isinstance(data.get("max_length"), list):
            return data
        phases = data["max_length"]
        if not phases or not all(isinstance(p, dict) for p in phases):
            raise ValueError("max_length: a number, or a list of phases like [{steps: 300, max_length: 512}]")
        longest = max((p.get("max_length") for p in phases if isinstance(p.get("max_length"), int)), default=1)
        total = sum(p.get("steps") for p in phases if isinstance(p.get("steps"), int))
        return {**data, "phases": phases, "max_length": longest, "steps": data.get("steps", total)}

    @model_validator(mode="after")
    def _phases_cover_the_steps(self) -> "TrainSpec":
        total = sum(p.steps for p in self.phases)
        if self.phases and total != self.steps:
            raise ValueError(f"the context phases add up to {total} steps but steps is {self.steps}: leave steps "
                             "out (it is their sum) or make them agree")
        return self

    def phase_bounds(self) -> list[tuple[int, int]]:
        """(first step, max_length) of each context phase; one phase of max_length when there are none."""
        starts = [sum(p.steps for p in self.phases[:i]) for i in range(len(self.phases))]
        return list(zip(starts, [p.max_length for p in self.phases])) or [(0, self.max_length)]


class DataSpec(Strict):
    """A data source: builtin:<name>, a .jsonl, .parquet or .txt file."""

    source: str
    columns: dict[str, str] = Field(default_factory=dict, description="rename fields first, e.g. "
                                    "{instruction: prompt, output: completion}")
    on_error: Literal["fail", "skip"] = Field("fail", description="what to do with a broken JSONL row")
    limit: Optional[int] = Field(None, gt=0, description="use at most this many rows")


class EvalSpec(Strict):
    """Held-out evaluation after a stage: eval/accuracy (generation), eval/perplexity, and with `tools`
    eval/tool_calls (tool calls per answer; the answers are generated with the tools at hand).

    What the model says to a prompt set, greedily (collapse and safety): eval/distinct_n (distinct token
    n-grams over all n-grams of the answers), eval/length (mean answer tokens), eval/entropy (mean
    next-token entropy while answering, nats), eval/refusal_rate (answers matching a refusal pattern).

    eval/win_rate: after a training stage, the share of the data's prompts where the stage's answer scores
    higher under `judge` than the answer of the model it started from (ties count half)."""

    data: Union[str, DataSpec] = "builtin:arithmetic-eval"
    metrics: list[Literal["accuracy", "perplexity", "distinct_n", "length", "entropy", "refusal_rate", "win_rate"]] = \
        Field(default_factory=lambda: ["accuracy", "perplexity"])
    prompts: Optional[Union[str, DataSpec]] = Field(
        None, description="prompt set for distinct_n, length, entropy and refusal_rate (rows with messages or "
        "prompt; default: data)")
    distinct_n: int = Field(2, ge=1, description="n of eval/distinct_n")
    judge: Optional[str] = Field(None, description="the reward that scores both answers for win_rate (a registry "
                                 "name, file.py:function or module:function)")
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(REFUSAL_PATTERNS),
        description="regular expressions (case-insensitive) an answer matches when it refuses")

    def row_fields(self) -> tuple:
        """What each eval row must carry: an answer only where accuracy is scored."""
        return EVAL_ROWS if "accuracy" in self.metrics else CHAT_ROWS

    @model_validator(mode="after")
    def _patterns_compile(self) -> "EvalSpec":
        for pattern in self.refusal_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal pattern {pattern!r} is not a regular expression: {exc}") from None
        return self
    tools: list[str] = Field(default_factory=list, description="tools the model may call while answering (chat "
                             "format; its chat template must be one TRL parses tool calls from)")
    max_tool_calls: int = Field(4, gt=0, description="tool-calling rounds per answer")
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


class DistillSpec(Strict):
    """A distill stage: TRL's distillation losses between the stage's input model (the student) and a teacher.
    Sampling reads train.temperature and train.max_completion_length (sdpo also train.num_generations)."""

    method: Literal["jsd", "gkd", "sdpo"] = Field(
        "jsd", description="jsd: generalized JSD to the teacher on the student's own samples (DistillationTrainer); "
        "gkd: the same on a share lmbda of steps, the data's completions on the rest (GKDTrainer); sdpo: the "
        "student shown feedback or a successful rollout is its own teacher, rollouts scored by rewards: (SDPOTrainer)")
    teacher: Optional[str] = Field(None, description="jsd, gkd: an earlier stage that writes a model, base, or a "
                                   "local model folder (same vocabulary); sdpo takes none: the student teaches itself")
    beta: float = Field(0.5, ge=0.0, le=1.0, description="jsd, gkd: the generalized JSD's mix: 0 = forward KL, "
                        "0.5 = JSD, 1 = reverse KL")
    lmbda: float = Field(0.5, ge=0.0, le=1.0, description="gkd: share of steps trained on the student's own samples "
                         "(jsd always is)")
    seq_kd: bool = Field(False, description="gkd: the other steps train on the teacher's samples, not the data's "
                         "completions")
    feedback: Optional[str] = Field(None, description="sdpo: a data column shown to the self-teacher as feedback "
                                    "(e.g. answer); unset = only the student's successful rollouts teach")

    def rows(self, reward_columns: tuple) -> tuple:
        """The fields each data row needs: sdpo scores prompts' rollouts; jsd and gkd read conversations."""
        if self.method == "sdpo":
            return PROMPT_ROWS + tuple(reward_columns) + ((self.feedback,) if self.feedback else ())
        return CHAT_ROWS


class RouteSpec(Strict):
    """A route stage (mixture of LoRA experts): expert stages' adapters on their common parent, behind a router."""

    experts: list[str] = Field(min_length=2, description="earlier stages that each train a LoRA adapter on the "
                               "same parent (the route stage starts from that parent)")
    router: Literal["classifier", "xlora", "arrow"] = Field(
        "classifier", description="classifier: a trained classifier (a LoRA and a head on the parent) sends each "
        "input to one expert; xlora: peft's X-LoRA, a learned per-token mix of the frozen experts; arrow: peft's "
        "training-free per-token Arrow routing")
    samples: int = Field(512, gt=0, description="classifier, xlora: training rows per expert, from each expert's "
                         "data (balanced: the fewest any expert has)")
    holdout: float = Field(0.2, gt=0.0, lt=1.0, description="classifier: share of routing prompts held out to "
                           "measure routing/accuracy")
    top_k: int = Field(1, gt=0, description="arrow: experts mixed per token")


class RolloutSpec(Strict):
    """Sampled completions an RL stage stores as `rollout` events while it trains (`cockpit rollouts`)."""

    every: Optional[int] = Field(None, gt=0, description="store at step 1 and every N steps; default logging_steps")
    samples: int = Field(4, ge=0, description="completions stored each time (0 = none)")


class Rule(Strict):
    """One gate rule on a metric: absolute bounds, or no regression (or a rise) against an earlier stage."""

    min: Optional[float] = None
    max: Optional[float] = None
    min_of: Union[None, str, list[str]] = Field(None, description="at least the value the named stage (each of the "
                                                "named stages) reached")
    max_of: Union[None, str, list[str]] = Field(None, description="at most the value the named stage (each of the "
                                                "named stages) reached")
    tolerance: float = Field(0.0, ge=0.0, description="slack allowed on min_of / max_of")
    gain: float = Field(0.0, ge=0.0, description="rise demanded on min_of (fall on max_of) against the named stage")

    def references(self, key: str) -> list[str]:
        """The stages `min_of` or `max_of` (`key`) names, as a list."""
        ref = getattr(self, key)
        return [] if ref is None else [ref] if isinstance(ref, str) else list(ref)

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


class SlurmSpec(Strict):
    """Where and how a stage's Slurm job runs (submitit's sbatch options)."""

    cluster: Literal["slurm", "local"] = Field(
        "slurm", description="slurm: sbatch on this cluster; local: the same submitit path run as a job on this "
        "machine (try a curriculum's Slurm path without a cluster)")
    partition: Optional[str] = None
    nodes: int = Field(1, gt=0, description="nodes; several run torchrun across them")
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: Optional[int] = Field(None, gt=0)
    mem_gb: Optional[int] = Field(None, gt=0)
    time: int = Field(60, gt=0, description="wall-clock limit in minutes")
    account: Optional[str] = None
    qos: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict, description="more #SBATCH options, e.g. {constraint: h100}")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the worker (module load, "
                             "source .venv/bin/activate)")
    requeues: int = Field(2, ge=0, description="times a preempted or killed job is submitted again, resuming from "
                          "the stage's last complete checkpoint")


class SkyPilotSpec(Strict):
    """Where and how a stage runs as a SkyPilot managed job (core.skypilot_job builds the task)."""

    bucket: Optional[str] = Field(None, description="required: a bucket (s3://, gs://, r2://, ...) mounted on the "
                                  "job's nodes; the run's checkpoints and final models live there")
    accelerators: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][\w.-]*(:\d+(\.\d+)?)?$",
                                        description="NAME[:COUNT], e.g. H100:8 (unset: CPU only)")
    infra: Optional[str] = Field(None, description="cloud[/region[/zone]] or k8s (unset: SkyPilot picks)")
    use_spot: bool = False
    num_nodes: int = Field(1, gt=0, description="nodes; several run torchrun across them")
    disk_size: Optional[int] = Field(None, gt=0, description="GB")
    resources: dict[str, Any] = Field(default_factory=dict, description="more SkyPilot resources fields, e.g. "
                                      "{memory: 64+, image_id: docker:...}")
    workdir: str = Field(".", description="the cockpit checkout synced to the nodes (relative to the curriculum)")
    setup: list[str] = Field(default_factory=lambda: ["pip install -e ."], description="shell lines run once on "
                             "each node, in the workdir")
    envs: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="names of environment variables (HF_TOKEN) "
                               "passed from the supervisor's environment, never written to the run directory")
    max_restarts_on_errors: int = Field(0, ge=0, description="SkyPilot restarts a failed job this often; a "
                                        "preempted one is always recovered, resuming from its last checkpoint")
    python: Optional[str] = Field(None, description="an interpreter with SkyPilot installed (default: "
                                  "$COCKPIT_SKYPILOT_PYTHON, else the checkout's .venv-sky, else the one behind `sky` "
                                  "on PATH)")


class LaunchSpec(Strict):
    """How a stage's worker starts: a local subprocess (torchrun for train.nproc > 1), a Slurm job, or a
    SkyPilot managed job."""

    via: Literal["local", "slurm", "skypilot"] = "local"
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)
    skypilot: SkyPilotSpec = Field(default_factory=SkyPilotSpec)


class Defaults(Strict):
    """Settings every stage inherits unless it sets its own."""

    lora: Optional[LoraSpec] = None
    train: dict[str, Any] = Field(default_factory=dict)
    eval: Optional[EvalSpec] = None
    trl: dict[str, Any] = Field(default_factory=dict, description="TRL config fields every training stage gets")
    launch: LaunchSpec = Field(default_factory=LaunchSpec, description="how every stage starts unless it says")


class StageSpec(Strict):
    """One stage of the curriculum."""

    name: str = Field(pattern=SAFE_NAME, description="letters, digits, _ . - (a directory name)")
    kind: Literal[KIND_NAMES] = Field(description="what the stage does (core.kinds)")
    from_: Optional[str] = Field(None, alias="from", description="the earlier stage whose output this one starts "
                                 "from (default: the previous stage), or base for model.base")
    data: Union[None, str, DataSpec] = None
    lora: Union[None, bool, LoraSpec] = Field(None, description="false = full fine-tuning")
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: Union[None, bool, EvalSpec] = None
    loss: str = Field("sigmoid", description="DPO loss_type: sigmoid, ipo, hinge, robust, ...")
    rewards: list[str] = Field(default_factory=lambda: ["exact_match"],
                               description="reward names (GRPO's and sdpo distillation's rewards; what on_policy "
                               "scores samples with)")
    on_policy: Optional[OnPolicySpec] = Field(None, description="dpo/grpo: mine the starting policy's samples first")
    rollouts: RolloutSpec = Field(default_factory=RolloutSpec, description="grpo: completions stored as events")
    tools: list[str] = Field(default_factory=list, description="grpo: tools the policy may call (registry names, "
                             "file.py:function or package.module:function)")
    environment: Optional[str] = Field(None, description="grpo: an environment the policy acts in (a registry "
                                       "name, file.py:Class or package.module:Class with reset, its tools as "
                                       "methods, optionally get_reward), TRL's environment_factory")
    max_tool_calls: Optional[int] = Field(None, gt=0, description="grpo: tool-calling rounds per rollout (unset = "
                                          "until the policy stops calling)")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, description="grpo: passed to the chat "
                                                 "template, e.g. {enable_thinking: false}")
    distill: Optional[DistillSpec] = Field(None, description="distill: the method and the teacher (default: jsd)")
    route: Optional[RouteSpec] = Field(None, description="route: the expert stages and the router")
    trl: dict[str, Any] = Field(default_factory=dict, description="fields of the stage's TRL config class "
                                "(SFTConfig, DPOConfig, GRPOConfig), e.g. {packing: true}; over defaults.trl")
    launch: LaunchSpec = Field(default_factory=LaunchSpec, description="how this stage starts (default: "
                               "defaults.launch)")
    gate: Optional[GateSpec] = None

    def evaluation(self) -> "EvalSpec | None":
        """The held-out evaluation after this stage: its eval:, the defaults for a kind that always
        evaluates, else None."""
        if self.eval is True or (self.eval is None and KINDS[self.kind].always_evaluates):
            return EvalSpec()
        return self.eval or None

    def needs(self) -> list[str]:
        """What this stage reads from earlier in the curriculum: its parent (or base), a distill stage's teacher,
        a route stage's experts."""
        teacher = [self.distill.teacher] if self.distill and self.distill.teacher else []
        return [self.from_ or BASE] + teacher + (self.route.experts if self.route else [])

    def row_fields(self) -> tuple:
        """The fields each row of `data:` must carry: the kind's, or prompts plus the columns the stage's
        rewards (and environment) read where it scores completions (RL, on-policy mining)."""
        if self.kind == "distill":
            return (self.distill or DistillSpec()).rows(reward_columns(self.rewards))
        columns = reward_columns(self.rewards) + reward_columns([self.environment], ENVIRONMENTS)
        return data_rows(self.kind, bool(self.on_policy), tuple(dict.fromkeys(columns)))


class Curriculum(Strict):
    """A whole curriculum file."""

    name: str = Field(pattern=SAFE_NAME, description="letters, digits, _ . - (part of the run directory's name)")
    extends: Optional[str] = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    defaults: Defaults = Field(default_factory=Defaults)
    stall_timeout_s: float = Field(600.0, gt=0, description="a stage with no new step for this long is stalled")
    max_oom_retries: int = Field(2, ge=0)
    parallel: int = Field(1, ge=1, description="stages run at once where their inputs are ready (each local one on "
                          "GPUs of its own, or its share of the cores)")
    seed: Optional[int] = Field(None, description="train.seed of every stage whose train: and defaults.train: set none")
    sandbox: Literal["strict", "weak"] = Field(
        "strict", description="code rewards: strict refuses to run where no namespace barrier exists; weak accepts "
        "the in-process guard alone (see README, Reliability)")
    stages: list[StageSpec] = Field(min_length=1)

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def index(self, name: str) -> int:
        return [s.name for s in self.stages].index(name)


def dump_resolved(cur: Curriculum) -> str:
    """The resolved curriculum as YAML (what actually runs, defaults applied)."""
    return yaml.safe_dump(cur.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False)
