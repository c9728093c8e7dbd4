"""Tools for RL stages: the built-ins, names checked at load, and a grpo stage whose rollouts call them."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError, SpecError
from core.store import RunStore
from workers import builtin
from workers.rewards import tool_use
from workers.tools import calculator, get_tools, python

ROOT = Path(__file__).resolve().parents[1]
CALL = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "calculator"}}]}

TOOL_RUN = """
name: tools
model: {base: "builtin:tiny-qwen3-tools"}
seed: 0
defaults:
  train: {precision: fp32, max_length: 512}
stages:
  - name: sft                # tool-use transcripts: call the calculator, read its answer, say the equation
    kind: sft
    data: "builtin:arithmetic-tool-chat"
    lora: false
    train: {steps: 80, batch_size: 16, lr: 3.0e-3, logging_steps: 40}
  - name: grpo
    kind: grpo
    data: "builtin:arithmetic-tool-prompts"
    tools: [calculator]
    max_tool_calls: 2
    chat_template_kwargs: {enable_thinking: false}
    rewards: [exact_match, tool_use]
    rollouts: {every: 1, samples: 4}
    train: {steps: 2, batch_size: 4, num_generations: 4, max_completion_length: 96, lr: 1.0e-4, logging_steps: 1}
    eval: {data: "builtin:arithmetic-tool-eval", metrics: [accuracy], tools: [calculator], max_tool_calls: 2,
           max_new_tokens: 40, max_samples: 16}
    gate: {require: {eval/tool_calls: {min: 0.5}}}   # the SFT taught it to reach for the calculator
"""


def test_calculator_evaluates_arithmetic_and_nothing_else():
    assert (calculator("1234+5678"), calculator("(2+3)*4/2"), calculator("7/2")) == ("6912", "10", "3.5")
    for hostile in ("__import__('os').system('id')", "9**999999", "open('/etc/passwd')", "1e400*1e400"):
        with pytest.raises((ValueError, SyntaxError)):
            calculator(hostile)


def test_python_tool_runs_in_the_sandbox():
    assert python("print(6 * 7)") == "42\n"
    assert "not allowed" in python("import socket\nsocket.socket()")


def test_tool_use_rewards_successful_calls_only():
    ok = [CALL, {"role": "tool", "content": "6912"}, {"role": "assistant", "content": "6912"}]
    failed = [CALL, {"role": "tool", "content": "{'error': 'unknown tool'}"}]
    assert tool_use(None, [ok, failed, [{"role": "assistant", "content": "6912"}], "6912"]) == [1.0, 0.0, 0.0, 0.0]


def test_tool_names_are_checked_at_load_and_resolved_by_the_worker(tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text(TOOL_RUN.replace("tools: [calculator]", "tools: [calculater]"))
    with pytest.raises(ConfigError, match=r"t.yaml:\d+: stages.1.tools.0: unknown tool 'calculater'; did you mean"):
        load_curriculum(config)
    (tmp_path / "mine.py").write_text("def lookup(key: str) -> str:\n    '''Look up.\n\n    Args:\n"
                                      "        key: what\n    '''\n    return key.upper()\n")
    config.write_text(TOOL_RUN.replace("tools: [calculator]", "tools: [calculator, ./mine.py:lookup]"))
    tools = load_curriculum(config).stages[1].tools
    assert tools == ["calculator", f"{tmp_path / 'mine.py'}:lookup"]
    assert [t.__name__ for t in get_tools(tools)] == ["calculator", "lookup"]
    with pytest.raises(SpecError, match="unknown tool"):
        get_tools(["nope"])


def test_gating_on_tool_calls_needs_an_eval_with_tools(tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text(TOOL_RUN.replace("tools: [calculator], max_tool_calls: 2,", ""))
    with pytest.raises(ConfigError, match="records eval/tool_calls only with eval: {tools: "):
        load_curriculum(config)
    config.write_text(TOOL_RUN.replace("tools: [calculator], max_tool_calls: 2,", "tools: [calculater],"))
    with pytest.raises(ConfigError, match="stages.1.eval.tools.0: unknown tool 'calculater'"):
        load_curriculum(config)


def test_the_tools_model_carries_qwen3_s_own_chat_template():
    from trl.chat_template_utils import add_response_schema
    tokenizer = builtin.build_tools_tokenizer()
    add_response_schema(tokenizer)  # raises for a template TRL cannot parse tool calls from
    text = tokenizer.apply_chat_template(builtin.tool_transcript(1234, 5678), tools=[calculator], tokenize=False)
    assert "<tool_call>" in text and "<tool_response>\n6912\n</tool_response>" in text
    tag = tokenizer.convert_tokens_to_ids("<tool_call>")
    assert tokenizer.decode([tag], skip_special_tokens=True) == "<tool_call>"  # what TRL's parser reads


@pytest.mark.slow
def test_a_grpo_stage_in_an_environment_calls_its_tools_and_its_rollouts_show_calls_results_and_rewards(tmp_path):
    """The recipes' tiny twins drive `tools:`; this one drives `environment:` (its calculator is a method)."""
    config = tmp_path / "tools.yaml"
    config.write_text(TOOL_RUN.replace("    tools: [calculator]\n", "    environment: arithmetic\n"))
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "cli.main", "run", str(config), "--batch", "--runs-dir", str(runs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = [p for p in runs.iterdir() if (p / "run.db").exists()]
    with RunStore(run / "run.db") as store:
        rollouts = store.events(kinds=["rollout"], stage="grpo")
        calls = [e.value for e in store.events(kinds=["metric"], stage="grpo") if e.name == "tools/call_frequency"]
    turns = [t for r in rollouts for t in r.data["turns"]]
    assert any(t.get("tool_calls") and t["tool_calls"][0]["name"] == "calculator" for t in turns), turns
    results = [t["content"] for t in turns if t["role"] == "tool"]
    assert results and all(r.isdigit() or "error" in r for r in results), results
    assert max(calls) > 0 and {"exact_match", "tool_use", "ArithmeticEnv"} == set(rollouts[0].data["rewards"])
    for r in rollouts:  # each rollout's own environment scored it: 1 when a calculator result was the sum asked
        a, b = map(int, re.findall(r"\d+", r.data["prompt"])[:2])
        results = [t["content"] for t in r.data["turns"] if t["role"] == "tool"]
        assert r.data["rewards"]["ArithmeticEnv"] == float(str(a + b) in results), r.data
    with RunStore(run / "run.db") as store:
        evals = {e.name: e for e in store.events(kinds=["eval_result"], stage="grpo")}
    assert evals["eval/tool_calls"].value >= 0.5 and evals["eval/accuracy"].data["samples"] == 16
    assert all("tool_calls" in example for example in evals["eval/accuracy"].data["examples"])
    shown = subprocess.run([sys.executable, "-m", "cli.main", "rollouts", run.name, "grpo", "--step", "1", "--json",
                            "--runs-dir", str(runs)], cwd=ROOT, capture_output=True, text=True)
    assert [r["step"] for r in json.loads(shown.stdout)] == [1, 1, 1, 1]
