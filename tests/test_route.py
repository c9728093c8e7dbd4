"""Route stages (mixture of LoRA experts): two experts from one base, a router over them, and the checks at load."""
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from core.config_load import load_curriculum
from core.dag import Holds
from core.errors import ConfigError
from core.store import RunStore
from conftest import run_batch
from workers.builtin import build_model, build_tokenizer
from workers.generation import generate
from workers.routing import RoutedModel, routing_data

ROOT = Path(__file__).resolve().parents[1]
EXPERTS = """
name: mole
defaults:
  train: {batch_size: 8, max_length: 48, logging_steps: 5}
  eval: {data: mixed.jsonl, metrics: [accuracy], max_new_tokens: 6}
stages:
  - {name: alpha, kind: sft, from: base, data: alpha.jsonl, lora: {r: 8}, train: {steps: 60, lr: 0.005}}
  - {name: beta, kind: sft, from: base, data: beta.jsonl, lora: {r: 8}, train: {steps: 60, lr: 0.005}}
"""
ROUTED = """  - {name: routed, kind: route, route: {experts: [alpha, beta], samples: 100}, lora: {r: 8},
     train: {steps: 40, lr: 0.002}, gate: {require: {eval/accuracy: {min_of: [alpha, beta], gain: 0.2}}}}
"""


def _write_tasks(folder: Path) -> None:
    """Two tasks a tiny model learns in a minute, each the other's opposite: an alpha question's answer is
    always 1111, a beta question's 2222; the mixed held-out set holds both (an expert alone gets half)."""
    rng = random.Random(0)

    def rows(word: str, code: str, n: int) -> list[dict]:
        asked = [f"What is the {word} code of {rng.randrange(10, 99)}?" for _ in range(n)]
        return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": code}], "answer": code}
                for q in asked]

    for name, data in (("alpha", rows("alpha", "1111", 200)), ("beta", rows("beta", "2222", 200)),
                       ("mixed", rows("alpha", "1111", 20) + rows("beta", "2222", 20))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))


ARROW = "  - {name: arrow, kind: route, route: {experts: [alpha, beta], router: arrow, top_k: 2}}\n"
XLORA = ("  - {name: xlora, kind: route, route: {experts: [alpha, beta], router: xlora, samples: 100}, "
         "train: {steps: 40, lr: 0.002}, gate: {require: {eval/accuracy: {min_of: [alpha, beta], gain: 0.2}}}}\n")


@pytest.fixture(scope="module")
def mole(tmp_path_factory) -> Path:
    """One run: the two experts trained once, then three routers over them (classifier, Arrow, X-LoRA)."""
    folder = tmp_path_factory.mktemp("mole")
    _write_tasks(folder)
    config = folder / "mole.yaml"
    config.write_text(EXPERTS + ROUTED + ARROW + XLORA)
    return run_batch(config, timeout=600)


def test_the_routed_model_beats_every_expert_on_the_mixed_set(mole):
    with RunStore(mole / "run.db") as store:
        acc = {s: store.final_metrics(s)["eval/accuracy"] for s in ("alpha", "beta", "routed")}
        routing = [e for e in store.events(stage="routed") if e.name == "routing/accuracy"]
        gate = store.stage("routed")
    assert acc["alpha"] == acc["beta"] == 0.5  # each expert answers its own half of the mixed set
    assert acc["routed"] >= 0.9 and gate["status"] == "passed"  # the gate: >= each expert + 0.2
    assert routing[-1].value >= 0.9
    confusion = routing[-1].data["confusion"]
    assert routing[-1].data["experts"] == ["alpha", "beta"] and sum(map(sum, confusion)) == 40  # 20 % of 2 × 100
    meta = json.loads((mole / "stages" / "routed" / "final" / "cockpit.json").read_text())
    assert meta["type"] == "routed" and set(meta["experts"]) == {"alpha", "beta"}
    assert (mole / "stages" / "routed" / "final" / "router" / "adapter_model.safetensors").is_file()
    _chat_and_compare_show_which_expert_answered(mole, acc["routed"])


def _chat_and_compare_show_which_expert_answered(run: Path, recorded: float) -> None:
    """Chat and compare load the route stage's output: experts on their base behind the saved router."""
    chat = _cli("chat", "--runs-dir", str(run.parent), f"{run.name}:routed", "--max-new-tokens", "6",
                "--prompt", "What is the beta code of 42?")
    assert chat.stdout.strip().startswith("2222") and "answered by beta" in chat.stderr
    result = json.loads(_cli("compare", "--runs-dir", str(run.parent), f"{run.name}:alpha", f"{run.name}:routed",
                             "--json").stdout)
    accuracy = {m["target"]: m["accuracy"] for m in result["metrics"]}
    assert accuracy == {"alpha": 0.5, "routed": recorded}  # the numbers the stages' evals recorded
    routes = [p["routes"]["routed"] for p in result["prompts"]]
    asked = ["beta" if "beta" in p["prompt"] else "alpha" for p in result["prompts"]]
    assert sum(r == a for r, a in zip(routes, asked)) >= 0.9 * len(asked)
    assert {p["routes"]["alpha"] for p in result["prompts"]} == {None}


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`cockpit ARGS`, asserting it exits 0."""
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_arrow_routes_without_training(mole):
    with RunStore(mole / "run.db") as store:
        assert "eval/accuracy" in store.final_metrics("arrow")
        assert store.last_step("arrow") is None  # nothing trained
    assert json.loads((mole / "stages" / "arrow" / "final" / "cockpit.json").read_text())["router"] == "arrow"
    chat = _cli("chat", "--runs-dir", str(mole.parent), f"{mole.name}:arrow", "--max-new-tokens", "4",
                "--prompt", "What is the beta code of 42?")
    assert chat.stdout.strip()  # per-token mixing: no one expert to name


def test_xlora_learns_to_mix_the_experts(mole):
    with RunStore(mole / "run.db") as store:
        assert store.stage("xlora")["status"] == "passed"  # beats each expert (0.5) by 0.2 on the mixed set
        assert store.last_step("xlora") == 40
        started = store.events(kinds=["stage_started"], stage="xlora")[-1].data
        recorded = store.final_metrics("xlora")["eval/accuracy"]
    assert started["router"] == "xlora" and started["rows"] == 200
    assert (mole / "stages" / "xlora" / "final" / "router" / "xlora_head.safetensors").is_file()
    compare = json.loads(_cli("compare", "--runs-dir", str(mole.parent), f"{mole.name}:alpha", f"{mole.name}:xlora",
                              "--json").stdout)
    accuracy = {m["target"]: m["accuracy"] for m in compare["metrics"]}
    assert accuracy == {"alpha": 0.5, "xlora": recorded} and recorded >= 0.7  # the saved head, reloaded
    mixes = [p["routes"]["xlora"] for p in compare["prompts"]]
    assert all(re.fullmatch(r"(alpha|beta) \d+%", mix) for mix in mixes)  # the expert weighted most, its share


def test_each_row_of_a_batch_is_answered_by_the_expert_its_router_names():
    """Two experts with different random adapters; a router that sends odd rows to the second."""
    tokenizer = build_tokenizer()
    torch.manual_seed(1)
    experts = get_peft_model(build_model(tokenizer), LoraConfig(r=4, target_modules="all-linear"), adapter_name="add")
    experts.add_adapter("mul", LoraConfig(r=4, target_modules="all-linear"))
    for name, p in experts.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)

    class OddRows:
        def __call__(self, input_ids, attention_mask):
            picks = torch.arange(len(input_ids)) % 2
            return type("Out", (), {"logits": torch.nn.functional.one_hot(picks, 2).float()})

    routed = RoutedModel(experts, ["add", "mul"], OddRows(), tokenizer.pad_token_id)
    prompts = ["What is 1+2? ", "What is 30+41? ", "What is 5+77? ", "What is 12+9? "]
    together = generate(routed, tokenizer, prompts, 6)
    assert routed.last_routes == ["add", "mul", "add", "mul"]
    alone = []
    for prompt, expert in zip(prompts, routed.last_routes):
        experts.set_adapter(expert)
        alone += generate(experts, tokenizer, [prompt], 6)
    assert together == alone and together[0] != together[1]


def test_routing_data_is_balanced_with_a_held_out_share_of_each_expert():
    data = routing_data([[f"a{i}" for i in range(50)], [f"b{i}" for i in range(10)]], 512, 0.2, seed=0)
    assert sorted(label for _, label in data.held_out) == [0, 0, 1, 1]
    assert sorted(label for _, label in data.train) == [0] * 8 + [1] * 8
    assert not {p for p, _ in data.train} & {p for p, _ in data.held_out}


@pytest.mark.parametrize("stage, words", [
    ("{name: r, kind: route, route: {experts: [alpha, bata]}}", "expert 'bata' names no earlier stage "
                                                                "\\(did you mean 'beta'\\?\\)"),
    ("{name: r, kind: route, route: {experts: [alpha, full]}}", "expert 'full' trains no LoRA adapter "
                                                                "\\(a sft stage with lora: false\\)"),
    ("{name: r, kind: route, route: {experts: [alpha, deeper]}}", "a router needs experts on one parent"),
    ("{name: r, kind: route, from: alpha, route: {experts: [alpha, beta]}}", "starts from its experts' parent"),
    ("{name: r, kind: route}", "a route stage needs route:"),
    ("{name: s, kind: sft, from: r0, data: alpha.jsonl}", "'r0' writes no model to start from"),
])
def test_route_stages_are_checked_at_load(tmp_path, stage, words):
    _write_tasks(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(EXPERTS + "  - {name: full, kind: sft, from: base, data: alpha.jsonl, lora: false}\n"
                    "  - {name: deeper, kind: sft, from: alpha, data: alpha.jsonl, lora: true}\n"
                    "  - {name: r0, kind: route, route: {experts: [alpha, beta]}}\n"
                    f"  - {stage}\n")
    with pytest.raises(ConfigError, match=words):
        load_curriculum(path)


def test_a_failed_expert_holds_back_the_router(tmp_path):
    _write_tasks(tmp_path)
    path = tmp_path / "h.yaml"
    path.write_text(EXPERTS + ROUTED)
    alpha, beta, routed = load_curriculum(path).stages
    holds = Holds()
    holds.ended_badly(beta, "failed")
    assert holds.held(alpha) is None and holds.held(routed) == "beta failed"
