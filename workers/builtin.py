"""The embedded default: `builtin:tiny-qwen3` and the generated arithmetic data sets.

Everything here is deterministic (fixed seeds), so two runs build the same tokenizer, the same
initial weights and the same rows. 500 addition pairs are held out for evaluation and never appear
in any training set.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

BUILTIN_MODEL = "builtin:tiny-qwen3"
PAD, BOS_ROLE, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
N_EVAL = 500
DATA_SEED = 1234

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}{{- '\\n' -}}"
    "{%- else -%}"
    "{{- message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

MODEL_CONFIG = dict(hidden_size=96, num_hidden_layers=4, intermediate_size=384, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, max_position_embeddings=256, tie_word_embeddings=True,
                    rope_theta=10000.0)


# -- data ---------------------------------------------------------------------------------------
def _all_pairs() -> list[tuple[int, int]]:
    pairs = [(a, b) for a in range(100) for b in range(100)]
    random.Random(DATA_SEED).shuffle(pairs)
    return pairs


def eval_pairs() -> list[tuple[int, int]]:
    """The held-out pairs: never in a training set."""
    return _all_pairs()[:N_EVAL]


def train_pairs() -> list[tuple[int, int]]:
    return _all_pairs()[N_EVAL:]


def equation(a: int, b: int) -> str:
    return f"{a}+{b}={a + b}"


def question(a: int, b: int) -> list[dict]:
    return [{"role": "user", "content": f"What is {a}+{b}?"}]


def answer_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _wrong(a: int, b: int, rng: random.Random) -> str:
    """The same equation with a plausible wrong sum (off by 1, 2 or 10)."""
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    wrong = a + b + delta if a + b + delta >= 0 else a + b - delta
    return f"{a}+{b}={wrong}"


def builtin_rows(name: str) -> list[dict]:
    """Rows of a built-in data set, in the shape the matching trainer reads."""
    rng = random.Random(DATA_SEED + 1)
    if name == "arithmetic-text":
        return [{"text": equation(a, b) + EOS} for a, b in train_pairs()]
    if name == "arithmetic-chat":
        return [{"messages": question(a, b) + answer_turn(equation(a, b))} for a, b in train_pairs()]
    if name == "arithmetic-preference":
        return [{"prompt": question(a, b), "chosen": answer_turn(equation(a, b)),
                 "rejected": answer_turn(_wrong(a, b, rng))} for a, b in train_pairs()]
    if name == "arithmetic-prompts":
        return [{"prompt": question(a, b), "answer": str(a + b)} for a, b in train_pairs()]
    if name == "arithmetic-eval":
        return [{"messages": question(a, b) + answer_turn(equation(a, b)), "prompt": f"{a}+{b}=",
                 "answer": str(a + b), "text": equation(a, b) + EOS} for a, b in eval_pairs()]
    from core.datafiles import DataError

    raise DataError(f"unknown builtin data {name!r}")


# -- tokenizer and model ------------------------------------------------------------------------
def _tokenizer_corpus() -> list[str]:
    roles = [f"{BOS_ROLE}{r}\n" for r in ("system", "user", "assistant")]
    questions = [f"What is {a}+{b}?" for a, b in train_pairs()[:2000]]
    return [equation(a, b) for a, b in train_pairs()] + questions + roles * 50


def build_tokenizer():
    """Byte-level BPE with single-digit tokens, trained locally in well under a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, min_frequency=2, special_tokens=[PAD, BOS_ROLE, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS,
                                   additional_special_tokens=[BOS_ROLE])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def build_model(tokenizer):
    """A freshly initialised ~0.6 M parameter Qwen3 (seeded): hidden 96 learns the chat format faster than 128."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **MODEL_CONFIG)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    ends = [tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(PAD)]
    model.generation_config = GenerationConfig(eos_token_id=ends, pad_token_id=tokenizer.pad_token_id,
                                               do_sample=False)
    return model


def materialise(run_dir: str | Path) -> Path:
    """`<run_dir>/base/`: the built-in model folder, created atomically once and then reused."""
    target = Path(run_dir) / "base"
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(f".base.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "cockpit.json").write_text(json.dumps({"type": "full", "base": None, "stage": None, "step": 0}))
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race; its folder is just as good
        shutil.rmtree(tmp, ignore_errors=True)
    return target
