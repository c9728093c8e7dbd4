"""Every recipe in configs/recipes/ has a tiny twin: the same file, `--set` onto a tiny random-init model of the
same architecture family, run end to end on CPU through `cockpit run --batch`."""
import subprocess
import sys
from pathlib import Path

import pytest

from core.config_load import load_curriculum
from core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "configs" / "recipes"


def _small(stages: list[str], rl: list[str]) -> list[str]:
    """Overrides that make every training stage a few tiny steps."""
    sets = [f"stages.{s}.train.{k}={v}" for s in stages for k, v in (("steps", 2), ("batch_size", 2))]
    return sets + [f"stages.{s}.train.{k}={v}" for s in rl
                   for k, v in (("num_generations", 2), ("max_completion_length", 48), ("logging_steps", 1))]


CODER_TWIN = ["model.base=builtin:tiny-qwen3-moe", "model.quantization=none", "defaults.train.precision=fp32",
              "defaults.train.max_length=128", "defaults.train.batch_size=4", "defaults.train.grad_accum=1",
              "defaults.train.lr=2e-3"]  # the perplexity gates need a few real steps
TWINS = {
    "tool-use-demo.yaml": ["defaults.eval.max_samples=4", "defaults.eval.max_new_tokens=24",
                           *_small(["sft", "grpo"], ["grpo"]),
                           *[f"stages.{s}.gate.require.eval/tool_calls.min=0" for s in ("sft", "grpo")],
                           "stages.sft.gate.require.eval/accuracy.min=0"],
    "qwen3-tool-grpo.yaml": ["model.base=builtin:tiny-qwen3-tools", "defaults.train.max_length=768",
                             "defaults.train.precision=fp32", "defaults.eval.max_new_tokens=24",
                             *_small(["tool-sft", "grpo-math", "grpo-code"], ["grpo-math", "grpo-code"])],
    "mole.yaml": ["model.base=builtin:tiny-qwen3", "defaults.train.precision=fp32", "defaults.eval.max_new_tokens=24",
                  *_small(["math", "convert"], []), "stages.routed.train.steps=30"],  # the gate's 0.9 routing holds
    "continual-distill.yaml": ["model.base=builtin:tiny-qwen3", "defaults.train.precision=fp32",
                               "defaults.eval.max_new_tokens=24", *_small(["user-update"], ["user-update"])],
    "gpt-oss-20b-agent.yaml": ["model.base=builtin:tiny-gpt-oss", "model.backend=auto", "model.quantization=none",
                               "model.dtype=auto", "defaults.train.precision=fp32", "defaults.train.max_length=768",
                               "defaults.eval.max_new_tokens=24",
                               *_small(["tool-sft", "agent-sft", "ipo", "grpo-code"], ["grpo-code"])],
    "llama-7b-scratch.yaml": ["model.base=builtin:tiny-llama", "model.config={}", "model.dtype=auto",
                              "defaults.train.precision=fp32", "defaults.eval.max_samples=16",
                              "stages.pretrain.train.max_length=[{steps: 3, max_length: 32}, "
                              "{steps: 3, max_length: 64}]",
                              "stages.pretrain.gate.require.eval/perplexity.max=1e6",
                              "stages.sft.gate.require.eval/accuracy.min=0", "stages.safety.eval.max_samples=8",
                              "stages.safety.gate.require.eval/refusal_rate.min=0",
                              *_small(["sft", "dpo", "safety"], [])],
    "qwen3-coder-domains.yaml": CODER_TWIN + [f"stages.{s}.train.steps=8" for s in ("lua", "gdscript")],
    "qwen3-coder-gdscript-dora.yaml": CODER_TWIN + ["stages.gdscript-dora.train.steps=8"],
}
# Recipes that only move where stages run: the base recipe's twin trains what they train. The Slurm path itself runs
# for real in tests/test_slurm_launch.py (submitit's local executor); no cloud here for SkyPilot's.
LAUNCH_VARIANTS = {"qwen3-tool-grpo-skypilot.yaml": "qwen3-tool-grpo.yaml",
                   "qwen3-tool-grpo-slurm.yaml": "qwen3-tool-grpo.yaml"}
REACHES = {"qwen3-coder-domains.yaml": {"lua": {"attention", "experts"}, "gdscript": {"attention", "experts"}},
           "qwen3-coder-gdscript-dora.yaml": {"gdscript-dora": {"attention"}},  # what each adapter trains
           "gpt-oss-20b-agent.yaml": {s: {"attention", "experts"} for s in ("tool-sft", "agent-sft", "ipo")}}


def test_every_recipe_has_a_tiny_twin():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(TWINS | LAUNCH_VARIANTS)


@pytest.mark.parametrize("variant", sorted(LAUNCH_VARIANTS))
def test_a_launch_variant_trains_what_its_base_trains(variant):
    def trained(cur) -> list[dict]:
        return [s.model_dump(exclude={"launch"}) for s in cur.stages]

    moved, base = load_curriculum(RECIPES / variant), load_curriculum(RECIPES / LAUNCH_VARIANTS[variant])
    assert trained(moved) == trained(base) and moved.model == base.model
    assert {s.launch.via for s in moved.stages} != {s.launch.via for s in base.stages}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(TWINS))
def test_the_tiny_twin_runs_end_to_end(recipe, tmp_path):
    runs = tmp_path / "runs"
    sets = [arg for s in TWINS[recipe] for arg in ("--set", s)]
    done = subprocess.run([sys.executable, "-m", "cli.main", "run", str(RECIPES / recipe), "--batch",
                           "--runs-dir", str(runs), *sets], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    with RunStore(run / "run.db") as store:
        stages = store.stages()
        rollouts = {e.stage for e in store.events(kinds=["rollout"])}
        started = {e.stage: e.data for e in store.events(kinds=["stage_started"])}
    assert all(s["status"] in ("completed", "passed") for s in stages), stages
    rl = {s["name"] for s in stages if s["kind"] == "grpo"}
    assert rollouts == rl  # every RL stage stored what it generated
    assert (run / "stages" / stages[-1]["name"] / "final").is_dir()
    for stage, families in REACHES.get(recipe, {}).items():
        assert set(started[stage]["adapter"]) == families, started[stage]
