"""builtin:tiny-qwen3 and the generated arithmetic data: deterministic, held-out eval really held out."""
import json

import torch
from safetensors.torch import load_file

from workers import builtin


def test_tokenizer_is_deterministic_and_splits_digits():
    a, b = builtin.build_tokenizer(), builtin.build_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert a.tokenize("37+48=135") == ["3", "7", "+", "4", "8", "=", "1", "3", "5"]
    assert a.eos_token == "<|im_end|>" and a.pad_token == "<|endoftext|>"
    assert 256 < len(a) <= 512


def test_chat_template_marks_assistant_tokens():
    tok = builtin.build_tokenizer()
    messages = builtin.question(3, 4) + builtin.answer_turn("3+4=7")
    enc = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True, tokenize=True)
    marked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(marked) == "3+4=7<|im_end|>"
    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_materialised_model_is_small_deterministic_and_reused(tmp_path):
    first = builtin.materialise(tmp_path / "a")
    second = builtin.materialise(tmp_path / "b")
    wa, wb = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert 0.5e6 < sum(t.numel() for t in wa.values()) < 0.8e6
    config = json.loads((first / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["tie_word_embeddings"]
    assert len(json.loads((first / "generation_config.json").read_text())["eos_token_id"]) == 2
    assert (first / "chat_template.jinja").is_file()
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert builtin.materialise(tmp_path / "a") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "base"]


def test_eval_pairs_never_in_training_sets():
    held_out = {(a, b) for a, b in builtin.eval_pairs()}
    assert len(held_out) == builtin.N_EVAL
    assert not held_out & set(builtin.train_pairs())
    texts = {r["text"] for r in builtin.builtin_rows("arithmetic-text")}
    assert not texts & {r["text"] for r in builtin.builtin_rows("arithmetic-eval")}
    prompts = {r["prompt"][0]["content"] for r in builtin.builtin_rows("arithmetic-prompts")}
    assert not prompts & {r["messages"][0]["content"] for r in builtin.builtin_rows("arithmetic-eval")}


def test_data_rows_have_the_trainer_shapes():
    chat = builtin.builtin_rows("arithmetic-chat")[0]["messages"]
    assert [m["role"] for m in chat] == ["user", "assistant"] and "=" in chat[1]["content"]
    pref = builtin.builtin_rows("arithmetic-preference")
    assert all(p["chosen"] != p["rejected"] for p in pref)
    row = builtin.builtin_rows("arithmetic-prompts")[0]
    a, b = map(int, row["prompt"][0]["content"].removeprefix("What is ").rstrip("?").split("+"))
    assert row["answer"] == str(a + b)
    assert builtin.builtin_rows("arithmetic-text") == builtin.builtin_rows("arithmetic-text")


def test_verbose_chat_writes_the_split_the_grader_reads_as_the_answer():
    from workers.rewards import answers_match

    rows = builtin.builtin_rows("arithmetic-chat-verbose")
    assert rows == builtin.builtin_rows("arithmetic-chat-verbose")
    big = verbose = 0
    for row in rows:
        text = row["messages"][1]["content"]
        a, b = map(int, row["messages"][0]["content"].removeprefix("What is ").rstrip("?").split("+"))
        assert text.startswith(builtin.equation(a, b))
        if text != builtin.equation(a, b):
            assert a + b >= 100 and text.endswith(f"={(a + b) // 100 * 100}+{(a + b) % 100}")
            assert answers_match(text, str(a + b)) == (a + b == 100)  # "100=100+0" still reads 100
            verbose += 1
        big += a + b >= 100
    assert 0.55 < verbose / big < 0.65
