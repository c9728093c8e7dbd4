"""Environments for RL stages (`environment:`, TRL's environment_factory): the built-in, names checked at load."""
import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError
from core.registry import ENVIRONMENTS
from workers.environments import ArithmeticEnv
from workers.functions import load_function

RUN = """
name: env
model: {base: "builtin:tiny-qwen3-tools"}
stages:
  - name: grpo
    kind: grpo
    data: "builtin:arithmetic-tool-prompts"
    environment: arithmetic
"""
MINE = '''
class Shop:
    def reset(self, **row):
        self.spent = 0

    def buy(self, item: str) -> str:
        """Buy an item.

        Args:
            item: what to buy
        """
        self.spent += 1
        return "ok"
'''


def test_the_arithmetic_environment_rewards_a_result_that_is_the_answer():
    env = ArithmeticEnv()
    env.reset(prompt=[{"role": "user", "content": "1234+5678="}], answer="6912")
    assert env.get_reward() == 0.0  # nothing asked yet
    assert env.calculator("1234+5677") == "6911" and env.get_reward() == 0.0
    assert env.calculator("1234+5678") == "6912" and env.get_reward() == 1.0
    env.reset(answer="#### 7")  # a GSM8K-style answer; reset forgets the last rollout
    assert env.get_reward() == 0.0 and env.calculator("3+4") == "7" and env.get_reward() == 1.0
    with pytest.raises(ValueError):
        env.calculator("__import__('os')")


def test_environment_names_are_checked_at_load_and_resolved_by_the_worker(tmp_path):
    config = tmp_path / "e.yaml"
    config.write_text(RUN.replace("environment: arithmetic", "environment: arithmetc"))
    with pytest.raises(ConfigError, match=r"e.yaml:8: stages.0.environment: unknown environment 'arithmetc'; "
                                          r"did you mean 'arithmetic'\?.*file.py:Class"):
        load_curriculum(config)
    (tmp_path / "shop.py").write_text(MINE)
    config.write_text(RUN.replace("environment: arithmetic", "environment: ./shop.py:Shop"))
    stage = load_curriculum(config).stages[0]
    assert stage.environment == f"{tmp_path / 'shop.py'}:Shop"
    shop = load_function(stage.environment, ENVIRONMENTS, "environment")()
    shop.reset(prompt="p")
    assert shop.buy("tea") == "ok" and shop.spent == 1
    config.write_text(RUN.replace("kind: grpo", "kind: sft").replace("arithmetic-tool-prompts", "arithmetic-tool-chat"))
    with pytest.raises(ConfigError, match="stages.0.environment: environment is read by grpo stages, not sft"):
        load_curriculum(config)


def test_the_environment_s_columns_are_required_of_the_data(tmp_path):
    config = tmp_path / "e.yaml"
    run = RUN + "    rewards: [format]\n"  # reads no column: the answer is the environment's
    config.write_text(run)
    assert load_curriculum(config).stages[0].row_fields() == ("prompt", "answer")
    config.write_text(run.replace("environment: arithmetic", "environment: null"))
    assert load_curriculum(config).stages[0].row_fields() == ("prompt",)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "1+2="}\n')
    config.write_text(run.replace('"builtin:arithmetic-tool-prompts"', str(rows)))
    with pytest.raises(ConfigError, match="answer"):
        load_curriculum(config)
