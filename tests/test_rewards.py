"""Reward functions: plain functions with TRL's signature."""
import pytest

from core.registry import REWARDS
from workers.common import SpecError
from workers.rewards import exact_match, extract_answer, format, get_rewards


def reward_short(prompts, completions, **_):
    """A test reward with variance even for an untrained model (used by the GRPO worker test)."""
    return [-len(c if isinstance(c, str) else c[0]["content"]) / 10 for c in completions]


def chat(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("text,expected", [
    ("37+48=85", "85"), ("= 12", "12"), ("85", "85"), ("1=2=3", "3"), ("no number", None), ("37+48", None),
    ("She sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"), ("The answer is 1,234.", "1234"),
    ("<think>2+2=5, no</think>So it is 4", "4"), ("so \\boxed{3.50}", "3.5"), ("85.", "85")])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_exact_match_text_and_chat_completions():
    completions = ["37+48=85", chat("37+48=84"), chat("85"), "garbage"]
    assert exact_match(None, completions, answer=["85", "85", "85", "85"]) == [1.0, 0.0, 1.0, 0.0]


def test_exact_match_reads_gsm8k_answers_and_only_the_assistant_s_words():
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert exact_match(None, ["So she sold 72 clips.", "#### 71", "72"], answer=[solution] * 3) == [1.0, 0.0, 1.0]
    tool_turns = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calculator"}}]},
                  {"role": "tool", "content": "72"}]
    assert exact_match(None, [tool_turns, tool_turns + [{"role": "assistant", "content": "72"}]],
                       answer=["72", "72"]) == [0.0, 1.0]


def test_format_wants_a_bare_equation():
    completions = ["37+48=85", chat(" 1+2=3 "), "37+48=85 and more", "85", chat("")]
    assert format(None, completions) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_registry_names_and_user_functions():
    assert get_rewards(["exact_match", "format"]) == [exact_match, format]
    assert get_rewards([f"{__file__}:reward_short"])[0](None, ["ab"]) == [-0.2]
    with pytest.raises(SpecError, match="unknown reward"):
        get_rewards(["nope"])
    with pytest.raises(SpecError, match="cannot load"):
        get_rewards([f"{__file__}:missing"])


def test_every_registry_reward_resolves_to_a_function_taking_its_columns():
    import inspect
    for name, entry in REWARDS.items():
        (func,) = get_rewards([name])
        params = inspect.signature(func).parameters
        assert callable(func) and func.__name__ == name, entry.target
        assert all(c in params for c in entry.columns), (name, entry.columns)
