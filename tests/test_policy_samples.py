"""On-policy mining: scoring samples, DPO pairs from the policy's own answers, GRPO's sometimes-solved prompts."""
from workers.policy_samples import Scored, preference_pairs, score, sometimes_solved
from workers.rewards import exact_match

PROMPT = [{"role": "user", "content": "What is 2+2?"}]


def test_score_sums_each_reward_per_sample_with_row_columns():
    def bonus(prompts, completions, **_):
        return [0.5 if c.endswith("4") else 0.0 for c in completions]

    scored = score([{"prompt": PROMPT, "answer": "4"}], [["2+2=4", "2+2=5"]], [exact_match, bonus])
    assert scored[0].rewards == [1.5, 0.0] and scored[0].mixed


def test_pairs_take_the_most_frequent_best_and_worst_answers():
    row = {"prompt": PROMPT, "answer": "4"}
    scored = [Scored(row, ["2+2=4", "2+2=5", "2+2=5", "2+2=3"], [1.0, 0.0, 0.0, 0.0]),
              Scored(row, ["2+2=4", "2+2=4"], [1.0, 1.0])]
    assert preference_pairs(scored) == [{"prompt": PROMPT, "chosen": [{"role": "assistant", "content": "2+2=4"}],
                                         "rejected": [{"role": "assistant", "content": "2+2=5"}]}]


def test_text_prompts_give_text_pairs():
    pairs = preference_pairs([Scored({"prompt": "2+2="}, ["4", "5"], [1.0, 0.0])])
    assert pairs == [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}]


def test_only_prompts_with_mixed_outcomes_are_kept_for_grpo():
    rows = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]
    scored = [Scored(rows[0], ["x", "y"], [1.0, 0.0]), Scored(rows[1], ["x", "x"], [1.0, 1.0]),
              Scored(rows[2], ["x", "y"], [0.0, 0.0])]
    assert sometimes_solved(scored) == [rows[0]]
