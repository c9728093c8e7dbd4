"""Behaviour evals (collapse and refusals) on crafted inputs, a collapsed tiny model, and through a gated eval stage."""
import json
from contextlib import nullcontext

import pytest
import torch

from core.config import EvalSpec
from core.config_load import load_curriculum
from core.errors import ConfigError
from core.store import RunStore
from conftest import run_batch
from workers.behaviour_eval import behaviour, distinct_n, refusal_rate, win_rate, wins
from workers.builtin import build_model, build_tokenizer


def test_distinct_n_is_low_for_one_answer_repeated():
    assert distinct_n([[1, 2, 3, 4], [5, 6, 7, 8, 9]], 2) == 1.0
    assert distinct_n([[7, 8] * 3] * 4, 2) == pytest.approx(2 / 20)
    assert distinct_n([[7, 8] * 3] * 4, 1) == pytest.approx(2 / 24)
    assert distinct_n([[12], [13]], 2) == 0.0  # no answer has two tokens: nothing to count


def test_refusal_rate_counts_answers_that_match_a_refusal_pattern():
    answers = ["I'm sorry, but I can't help with that.", "7 + 5 = 12", "As an AI, I will not do this.", "12"]
    assert refusal_rate(answers, EvalSpec().refusal_patterns) == 0.5
    assert refusal_rate(answers, [r"^\d+$"]) == 0.25
    assert refusal_rate([], [r"x"]) == 0.0


PROMPTS = [f"What is {a}+{b}? " for a, b in ((1, 2), (30, 41), (5, 77), (12, 9), (64, 3), (8, 8))]


def _stuck(model, token: int):
    """`model` made to say `token` whatever it is asked (its logit forced up by 100)."""
    model.lm_head.register_forward_hook(
        lambda _m, _i, out: out.index_add(-1, torch.tensor([token]), torch.full(out.shape[:-1] + (1,), 100.0)))
    return model


def test_a_collapsed_generator_has_low_distinct_2_and_entropy():
    """The same random model, then with one token's logit forced up (it says that token, whatever it is asked)."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).eval()
    spec = EvalSpec(metrics=["distinct_n", "length", "entropy"], max_new_tokens=8)
    prompts = PROMPTS
    varied = {k: v for k, (v, _) in behaviour(model, tokenizer, spec, prompts, "text").items()}
    _stuck(model, tokenizer.convert_tokens_to_ids("7"))
    collapsed = {k: v for k, (v, _) in behaviour(model, tokenizer, spec, prompts, "text").items()}
    assert collapsed["eval/entropy"] < 0.01 < varied["eval/entropy"]
    assert collapsed["eval/length"] == varied["eval/length"] == 8  # neither ever says end of turn here
    assert collapsed["eval/distinct_n"] == pytest.approx(1 / 42)  # one 2-gram ("7", "7"), 6 answers × 7


def test_refusal_patterns_and_prompt_files_are_checked_at_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nstages:\n  - {name: e, kind: eval, eval: {metrics: [refusal_rate], "
                    "refusal_patterns: ['I (cannot']}}\n")
    with pytest.raises(ConfigError, match="refusal pattern 'I \\(cannot' is not a regular expression"):
        load_curriculum(path)
    path.write_text("name: c\nstages:\n  - {name: e, kind: eval, eval: {metrics: [refusal_rate], "
                    "prompts: missing.jsonl}}\n")
    with pytest.raises(ConfigError, match="data file 'missing.jsonl' not found") as err:
        load_curriculum(path)
    assert err.value.field == "stages.0.eval.prompts"


def test_an_eval_stage_gates_on_collapse_and_refusals(tmp_path):
    prompts = tmp_path / "asks.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"What is {i}+{i}?"}) + "\n" for i in range(6)))
    config = tmp_path / "r.yaml"
    config.write_text(
        "name: r\nstages:\n  - name: look\n    kind: eval\n"
        "    eval: {metrics: [distinct_n, length, entropy, refusal_rate], prompts: asks.jsonl, max_new_tokens: 6}\n"
        "    gate: {require: {eval/refusal_rate: {max: 0.0}, eval/entropy: {min: 0.1}}}\n")
    run = run_batch(config)
    with RunStore(run / "run.db") as store:
        metrics = store.final_metrics("look")
    assert set(metrics) >= {"eval/distinct_n", "eval/length", "eval/entropy", "eval/refusal_rate"}
    assert metrics["eval/refusal_rate"] == 0.0 and metrics["eval/length"] == 6 and metrics["eval/entropy"] > 0.1


def test_wins_count_ties_half():
    assert wins([1.0, 0.0, 1.0, None], [0.0, 0.0, 1.0, 1.0]) == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)


def test_win_rate_prefers_the_model_whose_answers_the_judge_scores_higher():
    """A model stuck on '7' answers 77777777 (eight tokens), which is the data's answer; the random model never is."""
    tokenizer = build_tokenizer()
    rows = [{"prompt": p, "answer": "77777777"} for p in PROMPTS]
    spec = EvalSpec(metrics=["win_rate"], judge="exact_match", max_new_tokens=8)
    right, random = _stuck(build_model(tokenizer).eval(), tokenizer.convert_tokens_to_ids("7")), build_model(tokenizer)

    def rate(model, before):
        return win_rate(model, lambda: nullcontext(before), tokenizer, spec, rows, PROMPTS, "chat")["eval/win_rate"][0]
    assert (rate(right, random), rate(random, right), rate(random, random)) == (1.0, 0.0, 0.5)


@pytest.mark.parametrize("stage, words", [
    ("{name: s, kind: sft, data: 'builtin:arithmetic-chat', eval: {metrics: [win_rate]}}",
     "win_rate needs eval.judge"),
    ("{name: s, kind: eval, eval: {metrics: [win_rate], judge: exact_match}}",
     "eval stages do not train"),
    ("{name: s, kind: sft, data: 'builtin:arithmetic-chat', eval: {metrics: [win_rate], judge: exact_matsh}}",
     "did you mean 'exact_match'"),
])
def test_win_rate_is_checked_at_load(tmp_path, stage, words):
    path = tmp_path / "w.yaml"
    path.write_text(f"name: w\nstages:\n  - {{name: p, kind: pretrain, data: 'builtin:arithmetic-text'}}\n  - {stage}\n")
    with pytest.raises(ConfigError, match=words):
        load_curriculum(path)


def test_full_and_adapter_stages_measure_win_rate_against_where_they_started(tmp_path):
    """pretrain (full weights) compares with the base loaded beside it; sft (LoRA) with its adapter switched off."""
    config = tmp_path / "w.yaml"
    config.write_text(
        "name: w\ndefaults:\n  train: {steps: 2, batch_size: 4, max_length: 48}\n"
        "  eval: {metrics: [win_rate], judge: exact_match, max_samples: 6, max_new_tokens: 6}\n"
        "stages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text', lora: false}\n"
        "  - {name: s, kind: sft, data: 'builtin:arithmetic-chat', lora: {r: 4}}\n")
    run = run_batch(config)
    with RunStore(run / "run.db") as store:
        found = {s: store.final_metrics(s).get("eval/win_rate") for s in ("p", "s")}
    assert all(v is not None and 0.0 <= v <= 1.0 for v in found.values()), found
