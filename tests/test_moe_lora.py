"""LoRA on MoE models: the fused expert weights are reached through peft target_parameters, counted per family,
and a stage whose adapter misses them says so (or fails, with require_experts). Tiny random-init Qwen3-MoE and
GPT-OSS models are built in the test; nothing is fetched."""
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from core.config import EvalSpec, LoraSpec
from workers.adapter_targets import expert_parameters, experts_warning, lora_config, trainable_by_family
from workers.modeling import ModelError

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            vocab_size=64, num_experts_per_tok=2)
FAMILIES = {"qwen3_moe": dict(moe_intermediate_size=16, intermediate_size=32, num_experts=4),
            "gpt_oss": dict(intermediate_size=16, num_local_experts=4, sliding_window=32)}


def tiny_moe(family: str):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **TINY, **FAMILIES[family]))


def adapted(family: str, **lora):
    from peft import get_peft_model

    model = tiny_moe(family)
    spec = LoraSpec(r=4, alpha=8, **lora)
    return get_peft_model(model, lora_config(spec, model)), spec


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_expert_weights_are_found_once_each(family):
    assert expert_parameters(tiny_moe(family)) == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def test_a_dense_model_has_no_expert_weights():
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("qwen3", **{k: v for k, v in TINY.items()
                                                                              if k != "num_experts_per_tok"}))
    assert expert_parameters(model) == []


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_all_linear_trains_the_experts_and_they_learn(family):
    model, spec = adapted(family)
    counts = trainable_by_family(model)
    assert counts["attention"] > 0 and counts["experts"] > 0
    assert experts_warning(model, counts, spec) is None
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and ".experts." in n}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, TINY["vocab_size"], (2, 12))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert moved, "no expert adapter weight changed"


def test_attention_only_targets_warn_and_require_experts_fails():
    model, spec = adapted("qwen3_moe", target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    counts = trainable_by_family(model)
    assert set(counts) == {"attention"}
    assert "reaches no MoE expert weights" in experts_warning(model, counts, spec)
    with pytest.raises(ModelError, match="require_experts"):
        experts_warning(model, counts, spec.model_copy(update={"require_experts": True}))


def test_a_projection_name_asks_for_the_fused_weight_that_holds_it():
    model = tiny_moe("gpt_oss")
    config = lora_config(LoraSpec(target_modules=["q_proj", "down_proj"]), model)
    assert config.target_parameters == ["mlp.experts.down_proj"]
    config = lora_config(LoraSpec(target_modules=["up_proj"]), model)
    assert config.target_parameters == ["mlp.experts.gate_up_proj"]


def test_dora_cannot_reach_experts_and_says_how_to_go_on():
    model = tiny_moe("qwen3_moe")
    with pytest.raises(ModelError, match="use_dora: false.*target_parameters: \\[\\]"):
        lora_config(LoraSpec(use_dora=True), model)
    config = lora_config(LoraSpec(use_dora=True, target_parameters=[]), model)
    assert config.use_dora and not config.target_parameters


def test_a_saved_expert_adapter_reloads_to_the_same_outputs(tmp_path):
    from peft import PeftModel

    model, _ = adapted("qwen3_moe")
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: move it so the adapter changes the output
            torch.nn.init.normal_(param, std=0.1)
    model.eval()
    ids = torch.randint(0, TINY["vocab_size"], (1, 8))
    expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_moe("qwen3_moe"), tmp_path).eval()
    assert torch.allclose(reloaded(input_ids=ids).logits, expected, atol=1e-5)
    assert not torch.allclose(tiny_moe("qwen3_moe").eval()(input_ids=ids).logits, expected, atol=1e-3)


def test_a_perplexity_eval_reads_prompt_and_completion_rows():
    from workers.heldout import _text_item

    perplexity, accuracy = EvalSpec(data="x.jsonl", metrics=["perplexity"]), EvalSpec(data="x.jsonl")
    assert "answer" in accuracy.row_fields() and "answer" not in perplexity.row_fields()
    item = _text_item({"prompt": "-- add two numbers\n", "completion": "return a + b"}, tokenizer=None)
    assert (item.prompt, item.completion) == ("-- add two numbers\n", "return a + b")
