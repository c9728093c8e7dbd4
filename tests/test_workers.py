"""Workers for real: each kind trains a few steps on the tiny model and reports into a real store.

The stages chain like a curriculum (pretrain -> sft -> dpo -> grpo -> merge -> eval), run once per
module and shared by the tests below, so the whole file costs one worker start-up per kind.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import WorkerRun
from core.kinds import KINDS

EVAL = {"max_samples": 16, "batch_size": 16}
SHORT_REWARD = f"{Path(__file__).parent / 'test_rewards.py'}:reward_short"  # a user reward named by its file
MINE = {"prompts": 8, "samples": 4, "max_new_tokens": 6}
STAGES = {
    "pretrain": dict(kind="pretrain", data="builtin:arithmetic-text", eval=EVAL, train={"lr": 3e-3}),
    "sft": dict(kind="sft", data="builtin:arithmetic-chat", lora={"r": 8}, eval=EVAL),
    "dpo": dict(kind="dpo", data="builtin:arithmetic-preference", lora={"r": 8}, train={"beta": 0.1}),
    "grpo": dict(kind="grpo", data="builtin:arithmetic-prompts", lora={"r": 8}, train={"lr": 1e-2, "batch_size": 4,
                 "num_generations": 2, "max_completion_length": 6},
                 rewards=["exact_match", SHORT_REWARD], rollouts={"every": 2, "samples": 3}),
    "dpo_mined": dict(kind="dpo", data="builtin:arithmetic-prompts", lora={"r": 8}, loss="sigmoid,sft",
                      rewards=[SHORT_REWARD], on_policy=MINE),
    "grpo_mined": dict(kind="grpo", data="builtin:arithmetic-prompts", lora={"r": 8}, on_policy=MINE,
                       rewards=[SHORT_REWARD],
                       train={"batch_size": 4, "num_generations": 2, "max_completion_length": 6}),
    "final": dict(kind="merge", eval=EVAL),
    "check": dict(kind="eval", eval=EVAL),
}
PARENT = {"sft": "pretrain", "dpo": "sft", "dpo_mined": "sft", "grpo_mined": "sft", "grpo": "dpo", "final": "grpo", "check": "final"}


class Chain:
    """Runs each stage at most once, its parent first."""

    def __init__(self, run: WorkerRun):
        self.run, self.results = run, {}

    def __call__(self, name: str):
        if name not in self.results:
            parent = PARENT.get(name)
            if parent:
                assert self(parent).returncode == 0
            stage = dict(STAGES[name])
            spec = self.run.spec(name, input_model=str(self.run.final(parent)) if parent else None, **stage)
            self.results[name] = self.run.run(stage["kind"], spec)
        result = self.results[name]
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    return Chain(WorkerRun(tmp_path_factory.mktemp("chain") / "run"))


def metrics(run: WorkerRun, stage: str) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list] = {}
    with run.store() as store:
        for e in store.events(kinds=["metric"], stage=stage):
            found.setdefault(e.name, []).append((e.step, e.value))
    return found


def cockpit_meta(folder: Path) -> dict:
    return json.loads((folder / "cockpit.json").read_text())


def lora_b_norm(folder: Path) -> float:
    weights = load_file(folder / "adapter_model.safetensors")
    return sum(float(t.abs().sum()) for k, t in weights.items() if "lora_B" in k)


def test_pretrain_trains_the_full_model(chain):
    chain("pretrain")
    run = chain.run
    assert [s for s, _ in metrics(run, "pretrain")["loss"]] == [1, 2, 3, 4]
    before, after = load_file(run.root / "base" / "model.safetensors"), load_file(run.final("pretrain") / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert cockpit_meta(run.final("pretrain")) == {"type": "full", "base": None, "stage": "pretrain", "step": 4}
    with run.store() as store:
        started = store.events(kinds=["stage_started"], stage="pretrain")[0].data
        evals = {e.name: e for e in store.events(kinds=["eval_result"], stage="pretrain")}
    assert started["total_steps"] == 4 and started["backend"] == "hf" and started["params"]["trainable"] > 5e5
    assert evals["eval/perplexity"].value > 1 and evals["eval/accuracy"].data["format"] == "text"


@pytest.mark.parametrize("stage,key", [("sft", "mean_token_accuracy"), ("dpo", "rewards/margins")])
def test_adapter_stages_train_a_fresh_adapter_on_the_parent(chain, stage, key):
    chain(stage)
    run = chain.run
    found = metrics(run, stage)
    assert len(found["loss"]) == 4 and key in found
    final = run.final(stage)
    assert cockpit_meta(final)["type"] == "adapter"
    assert cockpit_meta(final)["base"] == str(run.final(PARENT[stage]))
    assert lora_b_norm(final) > 0  # lora_B starts at zero: non-zero means it trained


def test_sft_logs_trained_tokens_per_second(chain):
    chain("sft")
    found = metrics(chain.run, "sft")
    rates = [v for _, v in found["train/tokens_per_s"]]
    assert len(rates) == len(found["loss"]) - 1 and min(rates) > 0  # a rate needs two logs
    assert "gpu/peak_memory_gb" not in found  # CPU: no CUDA allocator to read


@pytest.mark.parametrize("stage", ["dpo_mined", "grpo_mined"])
def test_on_policy_stages_mine_the_parent_then_train(chain, stage):
    chain(stage)
    found = metrics(chain.run, stage)
    assert found["on_policy/prompts"] == [(0, 8.0)] and found["on_policy/mixed_prompts"][0][1] > 0
    assert len(found["loss"]) == 4 and lora_b_norm(chain.run.final(stage)) > 0
    with chain.run.store() as store:
        logs = [e.data["message"] for e in store.events(kinds=["log"], stage=stage)]
    assert any(m.startswith("on-policy: training on") for m in logs)


def test_grpo_logs_rewards_per_function(chain):
    chain("grpo")
    found = metrics(chain.run, "grpo")
    assert {"reward", "rewards/exact_match/mean", "rewards/reward_short/mean"} <= found.keys()
    assert lora_b_norm(chain.run.final("grpo")) > 0


def test_grpo_stores_readable_rollouts_with_each_reward(chain, capsys):
    chain("grpo")
    with chain.run.store() as store:
        rollouts = store.events(kinds=["rollout"], stage="grpo")
    assert sorted({r.step for r in rollouts}) == [1, 2, 4]  # step 1, then every 2
    assert [r.data["sample"] for r in rollouts if r.step == 2] == [0, 1, 2]
    for r in rollouts:
        (turn,) = r.data["turns"]
        assert turn["role"] == "assistant" and "+" in r.data["prompt"]
        assert r.data["rewards"]["reward_short"] == pytest.approx(-len(turn["content"]) / 10)
        assert r.data["rewards"]["exact_match"] in (0.0, 1.0)
        assert r.data["total"] == pytest.approx(sum(r.data["rewards"].values()))
    from cli.main import main
    assert main(["rollouts", chain.run.root.name, "grpo", "--runs-dir", str(chain.run.root.parent)]) == 0
    shown = capsys.readouterr().out
    assert "step 4 · sample 2" in shown and "reward_short" in shown and "stored steps: 1, 2, 4" in shown


def test_merge_writes_a_standalone_model_that_reloads(chain):
    chain("final")
    from transformers import AutoModelForCausalLM

    final = chain.run.final("final")
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    assert cockpit_meta(final)["type"] == "full"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert sum(p.numel() for p in model.parameters()) == sum(
        t.numel() for t in load_file(chain.run.root / "base" / "model.safetensors").values())


def test_merged_model_matches_the_adapter_chain(chain):
    chain("final")
    from workers.modeling import load_full

    ids = torch.tensor([[5, 6, 7, 8, 9]])
    chained, merged = load_full(str(chain.run.final("grpo"))), load_full(str(chain.run.final("final")))
    with torch.no_grad():
        assert torch.allclose(chained(ids).logits, merged(ids).logits, atol=1e-4)


def test_eval_stage_writes_accuracy(chain):
    chain("check")
    with chain.run.store() as store:
        evals = {e.name: e for e in store.events(kinds=["eval_result"], stage="check")}
    assert 0.0 <= evals["eval/accuracy"].value <= 1.0
    assert evals["eval/accuracy"].data["samples"] == 16 and evals["eval/accuracy"].data["format"] == "chat"
    examples, wrong = evals["eval/accuracy"].data["examples"], round((1 - evals["eval/accuracy"].value) * 16)
    assert [e["correct"] for e in examples] == [False] * min(3, wrong) + [True] * min(3, 16 - wrong)
    assert all("<|" not in e["prompt"] and e["prompt"] for e in examples)  # the question as a person reads it


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_registry_declares_every_metric_a_stage_records(chain, stage):
    chain(stage)
    kind = KINDS[STAGES[stage]["kind"]]
    recorded = set(metrics(chain.run, stage))
    with chain.run.store() as store:
        recorded |= set(store.final_metrics(stage))
    undeclared = sorted(m for m in recorded if not kind.emits(m, on_policy="on_policy" in STAGES[stage]))
    assert recorded and undeclared == []
