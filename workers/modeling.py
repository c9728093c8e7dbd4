"""Loading models for a stage: builtin, hub id or folder; adapters merged onto their base (chaining).

Chaining policy: a stage that starts from an adapter folder loads the adapter's base (recursively,
through each folder's cockpit.json), merges the adapter in, and trains a fresh adapter on top. So
DPO/GRPO's implicit reference (adapter disabled) is exactly the parent stage's policy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.config import BUILTIN_MODELS, LoraSpec, ModelSpec
from core.errors import SpecError
from core.worker_spec import WorkerSpec
from workers import builtin


class ModelError(SpecError):
    """A model source that cannot be used (exit code 2)."""


@dataclass
class Loaded:
    model: object
    tokenizer: object
    backend: str  # "hf" or "unsloth"
    source: str  # the folder or hub id the weights came from (an adapter's `base` in cockpit.json)


def resolve_source(spec: WorkerSpec) -> str:
    """The input model: the `from` stage's final folder, else model.base (builtin materialised)."""
    return spec.input_model or base_source(spec)


def teacher_source(spec: WorkerSpec) -> str:
    """A distill stage's teacher: its stage's final folder or a model folder, else model.base."""
    return spec.teacher_model or base_source(spec)


def base_source(spec: WorkerSpec) -> str:
    """model.base as a loadable folder or hub id (a builtin is materialised in the run directory)."""
    base = spec.model.base
    if base in BUILTIN_MODELS:
        return str(builtin.materialise(spec.run_dir, base))
    if base.startswith("builtin:"):
        raise ModelError(f"unknown builtin model {base!r}; known: {', '.join(BUILTIN_MODELS)}")
    return base


def is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str) -> str:
    """The model an adapter folder applies on: cockpit.json's base, else peft's record of it."""
    meta = Path(path) / "cockpit.json"
    if meta.is_file() and json.loads(meta.read_text()).get("base"):
        return json.loads(meta.read_text())["base"]
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]


def check_weights(path: str) -> None:
    """Refuse folders whose weights are only pickles (*.bin / *.pt): loading them runs code."""
    folder = Path(path)
    if not folder.is_dir():
        return  # a hub id; transformers only takes safetensors from the hub with use_safetensors
    has_safe = any(folder.glob("*.safetensors"))
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")
                                                        if p.name not in ("optimizer.pt", "scheduler.pt")]
    if pickles and not has_safe:
        raise ModelError(f"{folder} holds only pickle weights ({', '.join(sorted(pickles)[:3])}); "
                         "convert them to safetensors first")


def load_full(path: str, trust_remote_code: bool = False, options: dict | None = None):
    """A plain (merged) causal LM from a folder or hub id; adapters are merged onto their base.
    `options`: from_pretrained keyword arguments (`load_options`); default fp32, unquantized."""
    from transformers import AutoModelForCausalLM

    check_weights(path)
    options = options or {"dtype": "float32"}
    if is_adapter(path):
        from peft import PeftModel

        unquantized = {k: v for k, v in options.items() if k != "quantization_config"}  # merge needs real weights
        base = load_full(adapter_base(path), trust_remote_code, unquantized)
        merged = PeftModel.from_pretrained(base, path).merge_and_unload()
        return merged.requires_grad_(True)  # peft froze the base weights; merged, they train like any model's
    try:
        return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                    use_safetensors=True, **options)
    except OSError as exc:
        raise ModelError(f"cannot load model {path!r}: {exc}") from None


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def resolve_dtype(requested: str) -> str:
    """auto -> bf16 on a GPU that has it, fp32 otherwise (CPU weights stay fp32; `train.precision` decides
    autocast)."""
    if requested != "auto":
        return requested
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def load_options(model: ModelSpec, quantize: bool = True) -> dict:
    """from_pretrained keyword arguments for the curriculum's `model:` (dtype, attention, bitsandbytes)."""
    dtype = DTYPES[resolve_dtype(model.dtype)]
    options: dict = {"dtype": dtype}
    if model.attn_implementation:
        options["attn_implementation"] = model.attn_implementation
    if quantize and model.quantization != "none":
        options["quantization_config"] = _bitsandbytes(model.quantization, dtype)
        options["device_map"] = {"": 0}
    return options


def _bitsandbytes(quantization: str, compute_dtype: str):
    """NF4 with double quantization (QLoRA) or 8-bit weights; needs CUDA and bitsandbytes."""
    import torch

    if not torch.cuda.is_available():
        raise ModelError(f"model.quantization {quantization} needs a CUDA device (bitsandbytes quantizes on the GPU); "
                         "on this machine load the model unquantized (quantization: none)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError(f"model.quantization {quantization} needs bitsandbytes: pip install -e '.[gpu]'") from None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, compute_dtype))


def gradient_checkpointing(model: ModelSpec) -> bool:
    """model.gradient_checkpointing, unset = on with a GPU (memory is what is short there), off on CPU."""
    if model.gradient_checkpointing is not None:
        return model.gradient_checkpointing
    import torch

    return torch.cuda.is_available()


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pick_backend(requested: str) -> str:
    """auto -> unsloth only on CUDA with unsloth importable; hf otherwise."""
    if requested == "hf":
        return "hf"
    import torch

    if not torch.cuda.is_available():
        if requested == "unsloth":
            raise ModelError("backend unsloth needs a CUDA device")
        return "hf"
    try:
        import unsloth  # noqa: F401  (must be imported before transformers touches the model)
    except Exception as exc:  # unsloth raises plain Exceptions on unsupported setups
        if requested == "unsloth":
            raise ModelError(f"backend unsloth requested but `import unsloth` failed: {exc}") from None
        return "hf"
    return "unsloth"


def load_for_training(spec: WorkerSpec, lora: LoraSpec | None, max_length: int, scratch: Path) -> Loaded:
    """The stage's starting model (adapters merged) and tokenizer, on the chosen backend; `init: random`
    builds the base's architecture (with `config:` overrides) fresh for the first stage."""
    source = resolve_source(spec)
    trust = spec.model.trust_remote_code
    backend = pick_backend(spec.model.backend)
    check_weights(source)
    tokenizer = load_tokenizer(source, trust)
    if spec.model.init == "random" and spec.input_model is None:
        return Loaded(fresh_model(source, spec.model, spec.train().seed), tokenizer, "hf", source)
    if backend == "unsloth":
        return _load_unsloth(source, lora, max_length, spec.model, scratch, tokenizer)
    model = load_full(source, trust, load_options(spec.model))
    if spec.model.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing(spec.model))
    return Loaded(model, tokenizer, "hf", source)


def fresh_model(source: str, model: ModelSpec, seed: int):
    """The architecture of `source` with `model.config` overrides, randomly initialised (seeded), in its dtype."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=model.trust_remote_code)
    except OSError as exc:
        raise ModelError(f"cannot read the model config of {source!r}: {exc}") from None
    unknown = [k for k in model.config if not hasattr(config, k)]
    if unknown:
        raise ModelError(f"model.config: {config.model_type} configs have no {', '.join(map(repr, unknown))}")
    fields = config.to_dict() | model.config
    if "num_hidden_layers" in model.config:
        fields.pop("layer_types", None)  # one entry per layer: let the config derive it for the new depth
    config = type(config).from_dict(fields)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=getattr(torch, DTYPES[resolve_dtype(model.dtype)]),
                                            trust_remote_code=model.trust_remote_code)


def _load_unsloth(source: str, lora: LoraSpec | None, max_length: int, spec: ModelSpec, scratch: Path,
                  tokenizer) -> Loaded:
    """FastLanguageModel path (CUDA only; its own 4-bit and gradient checkpointing); an adapter input is
    merged to a scratch folder first."""
    import torch
    from unsloth import FastLanguageModel

    path, trust = source, spec.trust_remote_code
    if is_adapter(source):
        path = str(scratch / "merged-input")
        load_full(source, trust, load_options(spec, quantize=False)).save_pretrained(path)
        tokenizer.save_pretrained(path)
    check_weights(path)
    dtype = None if spec.dtype == "auto" else getattr(torch, DTYPES[spec.dtype])
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path, max_seq_length=max_length, dtype=dtype, load_in_4bit=spec.quantization == "4bit",
        load_in_8bit=spec.quantization == "8bit", trust_remote_code=trust)
    if lora:
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_dora=lora.use_dora,
            target_modules=_unsloth_targets(lora.target_modules),
            use_gradient_checkpointing="unsloth" if gradient_checkpointing(spec) else False)
    return Loaded(model, tokenizer, "unsloth", source)


def _unsloth_targets(targets):
    if targets == "all-linear":
        return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return targets


def count_params(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
