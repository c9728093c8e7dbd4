"""The embedded models and the generated arithmetic data sets.

`builtin:tiny-qwen3` (the demo's) has a minimal chat template; `builtin:tiny-qwen3-tools` has the real
Qwen3 chat template (TRL's `qwen3.jinja`: thinking, tool calls and tool results) and the Qwen3 tags as
tokens, so tool-calling stages run on it exactly as on a real Qwen3. Everything here is deterministic
(fixed seeds), so two runs build the same tokenizers, the same initial weights and the same rows.
500 addition pairs are held out for evaluation and never appear in any training set.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

BUILTIN_MODEL, TOOLS_MODEL = "builtin:tiny-qwen3", "builtin:tiny-qwen3-tools"
MOE_MODEL = "builtin:tiny-qwen3-moe"
LLAMA_MODEL = "builtin:tiny-llama"
GPT_OSS_MODEL = "builtin:tiny-gpt-oss"
PAD, BOS_ROLE, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN3_TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
HARMONY_START, HARMONY_RETURN, HARMONY_CALL = "<|start|>", "<|return|>", "<|call|>"
HARMONY_TAGS = ("<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", HARMONY_CALL)
N_EVAL = 500
DATA_SEED = 1234
VERBOSE_SHARE = 0.6  # above one half, so the SFT model's greedy answer keeps the habit

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
TOOLS_CONTEXT = 1024  # the tools system prompt alone is a few hundred tokens
LLAMA_CONFIG = dict(hidden_size=96, num_hidden_layers=4, intermediate_size=256, num_attention_heads=4,
                    num_key_value_heads=2, tie_word_embeddings=True, rope_theta=10000.0)  # GQA, as seed 001's 7B
GPT_OSS_CONFIG = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=64, num_local_experts=4,
                      num_experts_per_tok=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      sliding_window=64, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 150000.0})  # no YaRN at this length
# GPT-OSS's family above: attention sinks, alternating sliding-window layers, fused experts
MOE_CONFIG = dict(hidden_size=64, num_hidden_layers=2, moe_intermediate_size=64, intermediate_size=128,
                  num_experts=4, num_experts_per_tok=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  tie_word_embeddings=True)


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


def verbose(a: int, b: int, rng: random.Random) -> str:
    """The equation; for a sum of 100 or more, in VERBOSE_SHARE of rows, its place-value split after it."""
    total = a + b
    if total >= 100 and rng.random() < VERBOSE_SHARE:
        return f"{equation(a, b)}={total // 100 * 100}+{total % 100}"
    return equation(a, b)


def equation(a: int, b: int) -> str:
    return f"{a}+{b}={a + b}"


def question(a: int, b: int) -> list[dict]:
    return [{"role": "user", "content": f"What is {a}+{b}?"}]


def answer_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def tool_pairs(n: int, seed: int) -> list[tuple[int, int]]:
    """Four-digit additions: too long for the tiny model's head, easy with a calculator."""
    rng = random.Random(seed)
    return [(rng.randrange(1000, 10000), rng.randrange(1000, 10000)) for _ in range(n)]


def tool_transcript(a: int, b: int) -> list[dict]:
    """user -> assistant calls the calculator -> tool result -> assistant answers with it."""
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": f"{a}+{b}"}}}
    return question(a, b) + [{"role": "assistant", "content": "", "tool_calls": [call]},
                             {"role": "tool", "name": "calculator", "content": str(a + b)}] + answer_turn(str(a + b))


def _tools_column() -> str:
    """The `tools` column of a tool-use SFT row: the JSON schemas the chat template renders."""
    from transformers.utils import get_json_schema

    from workers.tools import calculator

    return json.dumps([get_json_schema(calculator)])


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
    if name == "arithmetic-chat-verbose":  # graded on the number after the last "=": 100
        return [{"messages": question(a, b) + answer_turn(verbose(a, b, rng))} for a, b in train_pairs()]
    if name == "arithmetic-preference":
        return [{"prompt": question(a, b), "chosen": answer_turn(equation(a, b)),
                 "rejected": answer_turn(_wrong(a, b, rng))} for a, b in train_pairs()]
    if name == "arithmetic-prompts":
        return [{"prompt": question(a, b), "answer": str(a + b)} for a, b in train_pairs()]
    if name == "arithmetic-tool-chat":
        tools = _tools_column()
        return [{"messages": tool_transcript(a, b), "tools": tools} for a, b in tool_pairs(4000, DATA_SEED + 2)]
    if name == "arithmetic-tool-prompts":
        return [{"prompt": question(a, b), "answer": str(a + b)} for a, b in tool_pairs(4000, DATA_SEED + 3)]
    if name == "arithmetic-tool-eval":  # other seeds: a pair shared with training is a 1-in-10-million event
        return [{"prompt": question(a, b), "answer": str(a + b)} for a, b in tool_pairs(N_EVAL, DATA_SEED + 4)]
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
    fast = _bpe(_tokenizer_corpus(), vocab_size=512)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tools_tokenizer():
    """The same kind of BPE, trained on arithmetic and on tool-use transcripts rendered by Qwen3's own chat
    template (TRL's copy), which it carries (with Qwen3's tags as plain added tokens, as in Qwen3)."""
    from importlib import resources

    from workers.tools import calculator

    template = resources.files("trl").joinpath("chat_templates/qwen3.jinja").read_text(encoding="utf-8")
    renderer = _bpe(["a"], vocab_size=300, template=template)
    transcripts = [renderer.apply_chat_template(tool_transcript(a, b), tools=[calculator], tokenize=False,
                                                enable_thinking=think)
                   for a, b in tool_pairs(150, seed=7) for think in (True, False)]
    for tag in (BOS_ROLE, EOS, PAD, *QWEN3_TAGS):  # tags are whole tokens: keep them out of the merges
        transcripts = [t.replace(tag, "\n") for t in transcripts]
    return _bpe(_tokenizer_corpus() + transcripts, vocab_size=800, template=template)


def build_harmony_tokenizer():
    """The same kind of BPE for GPT-OSS's Harmony format: trained on tool-use transcripts rendered by TRL's copy of
    the GPT-OSS chat template, which it carries; <|return|> ends a reply, <|call|> a tool call."""
    from importlib import resources

    from workers.tools import calculator

    template = resources.files("trl").joinpath("chat_templates/gptoss.jinja").read_text(encoding="utf-8")
    renderer = _bpe(["a"], vocab_size=300, template=template)
    transcripts = [renderer.apply_chat_template(tool_transcript(a, b), tools=[calculator], tokenize=False)
                   for a, b in tool_pairs(150, seed=7)]
    for tag in (HARMONY_START, HARMONY_RETURN, PAD, *HARMONY_TAGS):
        transcripts = [t.replace(tag, "\n") for t in transcripts]
    return _bpe(_tokenizer_corpus() + transcripts, vocab_size=800, template=template,
                specials=(PAD, HARMONY_START, HARMONY_RETURN), tags=HARMONY_TAGS)


def _bpe(corpus: list[str], vocab_size: int, template: str | None = None, specials: tuple = (PAD, BOS_ROLE, EOS),
         tags: tuple = QWEN3_TAGS):
    """`specials`: pad, role start, end of reply (special tokens); `tags`: plain added tokens the template uses."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    pad, start, end = specials
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=end,
                                   additional_special_tokens=[start])
    if template:  # the tags survive decode(skip_special_tokens=True), which TRL's tool parsing relies on
        fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
        fast.chat_template = template
    fast.padding_side = "right"
    return fast


def build_model(tokenizer, context: int = MODEL_CONFIG["max_position_embeddings"], family: str = "qwen3",
                fields: dict = MODEL_CONFIG):
    """A freshly initialised tiny model of `family` (a transformers model_type), seeded: the demo's ~0.6 M
    parameter Qwen3 by default (hidden 96 learns the chat format faster than 128)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.for_model(family, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                                  **(fields | {"max_position_embeddings": context}))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    ends = [tokenizer.convert_tokens_to_ids(t) for t in (EOS, PAD, HARMONY_CALL) if t in tokenizer.get_vocab()]
    ends = list(dict.fromkeys([tokenizer.eos_token_id, *ends]))  # Harmony: <|return|>, and <|call|> before a tool
    model.generation_config = GenerationConfig(eos_token_id=ends, pad_token_id=tokenizer.pad_token_id,
                                               do_sample=False)
    return model


def materialise(run_dir: str | Path, name: str = BUILTIN_MODEL) -> Path:
    """`<run_dir>/base/`: the built-in model folder, created atomically once and then reused."""
    target = Path(run_dir) / "base"
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(f".base.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if name == TOOLS_MODEL:
        tokenizer = build_tools_tokenizer()
        model = build_model(tokenizer, TOOLS_CONTEXT)
    elif name == MOE_MODEL:  # Qwen3-Coder's family: fused experts, Qwen3's chat template
        tokenizer = build_tools_tokenizer()
        model = build_model(tokenizer, TOOLS_CONTEXT, "qwen3_moe", MOE_CONFIG)
    elif name == GPT_OSS_MODEL:  # GPT-OSS's family: attention sinks, sliding window, experts; Harmony
        tokenizer = build_harmony_tokenizer()
        model = build_model(tokenizer, TOOLS_CONTEXT, "gpt_oss", GPT_OSS_CONFIG)
    elif name == LLAMA_MODEL:  # seed 001's family: LLaMA with grouped-query attention, the demo's tokenizer
        tokenizer = build_tokenizer()
        model = build_model(tokenizer, TOOLS_CONTEXT, "llama", LLAMA_CONFIG)
    else:
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
