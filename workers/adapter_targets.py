"""What a LoRA adapter reaches: fused MoE expert weights as peft `target_parameters`, and the trainable
parameters per module family, so a MoE model whose experts got nothing is never silent (Unsloth #3405:
default targets adapt attention only, ~32 M instead of 200 M+ trainable on GPT-OSS-20B).

Transformers keeps a MoE layer's experts as 3-D `nn.Parameter`s (`mlp.experts.gate_up_proj`,
`mlp.experts.down_proj`), not `nn.Linear`s, so `target_modules` never reaches them; peft 0.21 does
through `target_parameters` (its ParamWrapper), which does not take DoRA.
"""
from __future__ import annotations

import re

from core.config import LoraSpec
from workers.modeling import ModelError

FAMILIES = ("attention", "mlp", "experts", "router", "other")
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")  # what a dense MLP's projections are called
_LAYER_PREFIX = re.compile(r"^.*\.(layers|h|blocks)\.\d+\.")
_ROUTER = re.compile(r"\.(router|gate)\.")


def expert_parameters(model) -> list[str]:
    """The fused expert weights of `model` as peft target names (e.g. "mlp.experts.gate_up_proj"), once each."""
    names: list[str] = []
    for module_name, module in model.named_modules():
        if not type(module).__name__.endswith("Experts"):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if param.dim() == 3:
                name = _LAYER_PREFIX.sub("", f"{module_name}.{param_name}")
                if name not in names:
                    names.append(name)
    return names


def lora_targets(lora: LoraSpec, model) -> tuple[str | list[str], list[str] | None]:
    """(target_modules, target_parameters) for peft: where the targets ask for the MLP (all-linear, or
    gate/up/down projections), a MoE model's fused experts are added unless `target_parameters` is set."""
    if lora.target_parameters is not None:
        return lora.target_modules, lora.target_parameters or None
    experts = [e for e in expert_parameters(model) if _asked_for(lora.target_modules, e)]
    if experts and lora.use_dora:
        raise ModelError("use_dora: peft cannot put DoRA on fused MoE expert weights "
                         f"({', '.join(experts)}); set lora.use_dora: false to adapt the experts with LoRA, "
                         "or lora.target_parameters: [] for DoRA on the other targets only")
    return lora.target_modules, experts or None


def lora_config(lora: LoraSpec, model):
    """A peft LoraConfig from the stage's LoraSpec, reaching `model`'s experts where the targets ask."""
    from peft import LoraConfig

    modules, parameters = lora_targets(lora, model)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=modules,
                      target_parameters=parameters, use_dora=lora.use_dora, task_type="CAUSAL_LM")


def _asked_for(targets: str | list[str], expert: str) -> bool:
    """all-linear asks for every expert weight; a projection name asks for the fused weight that holds it
    (gate_proj and up_proj live in gate_up_proj)."""
    if targets == "all-linear":
        return True
    if isinstance(targets, str):
        return False
    parts = expert.rsplit(".", 1)[-1].removesuffix("_proj").split("_")
    return any(t in MLP_NAMES and t.removesuffix("_proj") in parts for t in targets)


def family(name: str) -> str:
    """attention, mlp, experts, router or other, from a parameter's name."""
    if ".experts." in name:
        return "experts"
    if _ROUTER.search(name):
        return "router"
    if "attn" in name or "attention" in name:
        return "attention"
    if ".mlp." in name or "feed_forward" in name:
        return "mlp"
    return "other"


def trainable_by_family(model) -> dict[str, int]:
    """Trainable parameter counts per family (families with none left out)."""
    counts = dict.fromkeys(FAMILIES, 0)
    for name, param in model.named_parameters():
        if param.requires_grad:
            counts[family(name)] += param.numel()
    return {k: v for k, v in counts.items() if v}


def experts_warning(model, counts: dict[str, int], lora: LoraSpec | None) -> str | None:
    """Why a MoE model's adapter misses its experts (None when it reaches them, or there are none); raises
    when the stage says `require_experts`."""
    if lora is None or counts.get("experts") or not expert_parameters(model):
        return None
    text = ("the adapter reaches no MoE expert weights (trainable: "
            f"{', '.join(f'{k} {v:,}' for k, v in counts.items())}); add them with lora.target_modules: "
            "all-linear or lora.target_parameters")
    if lora.require_experts:
        raise ModelError(f"lora.require_experts: {text}")
    return text
