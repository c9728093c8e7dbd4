"""The stage kinds: one entry each says what the kind reads, trains and emits, and which worker runs it.

Adding a stage kind = one `StageKind` in `KINDS` + one module `workers/stages/<name>.py` with
`main(stage)`; tests/test_kinds.py checks both directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

# Fields a data row must carry; a tuple inside means "one of these".
EVAL_ROWS: tuple = (("messages", "prompt"), "answer")
PROMPT_ROWS: tuple = ("prompt",)
CHAT_ROWS: tuple = (("messages", "prompt"),)

TRAINER_METRICS = ("loss", "grad_norm", "learning_rate", "entropy", "num_tokens", "mean_token_accuracy", "epoch",
                   "train_*", "train/tokens_per_s", "gpu/peak_memory_gb")
EVAL_METRICS = ("eval/accuracy", "eval/perplexity", "eval/tool_calls", "eval/distinct_n", "eval/length", "eval/entropy",
                "eval/refusal_rate", "eval/win_rate")
ON_POLICY_METRICS = ("on_policy/mean_reward", "on_policy/mixed_prompts", "on_policy/prompts")
DISTILL_TRAINERS = {"jsd": "DistillationTrainer", "gkd": "trl.experimental.gkd.GKDTrainer",
                    "sdpo": "trl.experimental.sdpo.SDPOTrainer"}  # a distill stage's trainer by method


@dataclass(frozen=True)
class StageKind:
    """One stage kind; `metrics` are the names (fnmatch patterns) its worker emits while training."""

    name: str
    summary: str
    rows: tuple = ()                # fields each row of `data:` must carry; () = the kind reads no data
    trainer: str | None = None      # the TRL trainer class (a prestarted interpreter imports it early)
    adapter: bool = False           # takes `defaults.lora` unless the stage says lora: false
    needs_parent: bool = False      # cannot be the first stage
    options: tuple[str, ...] = ()   # kind-specific StageSpec fields it reads
    metrics: tuple[str, ...] = ()
    eval_format: str = "chat"       # what eval format `auto` means after this kind
    always_evaluates: bool = False  # evaluates with the default EvalSpec when the stage has no eval:
    scores_data: bool = False       # its rewards score completions of its data's prompts (rows carry their columns)
    outputs: bool = True            # writes a model (final/) a later stage can start from

    @property
    def trains(self) -> bool:
        return self.trainer is not None

    @property
    def worker(self) -> str:
        """The module run as `python -m <worker> spec.json`."""
        return f"workers.stages.{self.name}"

    def recorded(self, on_policy: bool = False) -> tuple[str, ...]:
        """The metric names (fnmatch patterns) a stage of this kind records, eval results included."""
        return self.metrics + EVAL_METRICS + (ON_POLICY_METRICS if on_policy else ())

    def emits(self, metric: str, on_policy: bool = False) -> bool:
        """Whether a stage of this kind can record `metric`."""
        return any(fnmatchcase(metric, pattern) for pattern in self.recorded(on_policy))

    def metric_names(self, on_policy: bool = False) -> list[str]:
        """The plain (wildcard-free) metric names, for "did you mean" hints."""
        return [n for n in self.recorded(on_policy) if "*" not in n]


KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("pretrain", "causal LM on raw text", rows=("text",), trainer="SFTTrainer",
              metrics=TRAINER_METRICS, eval_format="text"),
    StageKind("sft", "supervised fine-tuning on conversations", rows=CHAT_ROWS, trainer="SFTTrainer", adapter=True,
              metrics=TRAINER_METRICS),
    StageKind("dpo", "preference optimisation (DPO, IPO, ...) on chosen/rejected pairs",
              rows=("prompt", "chosen", "rejected"), trainer="DPOTrainer", adapter=True,
              options=("loss", "rewards", "on_policy"),
              metrics=TRAINER_METRICS + ("logits/*", "logps/*", "rewards/*")),
    StageKind("grpo", "online RL with group-relative advantages from reward functions (and tools)", rows=PROMPT_ROWS,
              trainer="GRPOTrainer", adapter=True, scores_data=True,
              options=("rewards", "on_policy", "rollouts", "tools", "environment", "max_tool_calls",
                       "chat_template_kwargs"),
              metrics=TRAINER_METRICS + ("reward", "reward_std", "kl", "completions/*", "rewards/*",
                                         "frac_reward_zero_std", "clip_ratio/*", "step_time", "tools/*")),
    StageKind("distill", "train the parent against a teacher's next-token distributions (jsd, gkd), or against "
              "itself shown feedback (sdpo)", rows=CHAT_ROWS, trainer="DistillationTrainer", adapter=True,
              options=("distill", "rewards"),
              metrics=TRAINER_METRICS + ("completions/*", "step_time", "tools/*", "self_distillation/*", "sdpo/*")),
    StageKind("route", "expert stages' LoRA adapters behind a router that picks the expert for each input (MoLE)",
              trainer="transformers.Trainer", adapter=True, options=("route",),
              metrics=TRAINER_METRICS + ("routing/accuracy",), outputs=False),
    StageKind("merge", "fold the parent's adapter into its base weights", needs_parent=True),
    StageKind("eval", "evaluate the parent's output without training", always_evaluates=True, outputs=False),
)}
KIND_NAMES = tuple(KINDS)
KIND_OPTIONS = tuple(sorted({opt for kind in KINDS.values() for opt in kind.options}))


def readers_of(option: str) -> list[str]:
    """The kinds that read a kind-specific StageSpec field."""
    return [k.name for k in KINDS.values() if option in k.options]


def data_rows(kind: str, on_policy: bool, reward_columns: tuple = ()) -> tuple:
    """The row fields a stage's data must have: stages that score prompts' completions (on-policy mining,
    RL) read prompts plus the columns their rewards read; others what their kind reads."""
    if on_policy or KINDS[kind].scores_data:
        return PROMPT_ROWS + tuple(reward_columns)
    return KINDS[kind].rows
