"""Model loading for real sizes, on the paths a CPU can run: dtype, random init with config overrides,
gradient checkpointing, and clear refusals for what needs a GPU (bitsandbytes quantization)."""
import json

import pytest
from safetensors import safe_open

from core.config_load import load_curriculum
from core.errors import ConfigError

PRETRAIN = dict(data="builtin:arithmetic-text", eval=False)


def started(run, stage: str) -> dict:
    with run.store() as store:
        return store.events(kinds=["stage_started"], stage=stage)[-1].data


def dtypes(folder) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {str(f.get_tensor(k).dtype) for k in f.keys()}


def test_random_init_builds_the_base_architecture_with_overrides(worker_run):
    done = worker_run.run("pretrain", worker_run.spec("pretrain", "pretrain", **PRETRAIN))
    assert done.returncode == 0, done.stderr[-2000:]
    full = started(worker_run, "pretrain")["params"]["total"]
    spec = worker_run.spec("scratch", "pretrain", model={"init": "random", "config": {"num_hidden_layers": 2}},
                           **PRETRAIN)
    done = worker_run.run("pretrain", spec)
    assert done.returncode == 0, done.stderr[-2000:]
    assert started(worker_run, "scratch")["params"]["total"] < full  # two of the four layers
    config = json.loads((worker_run.final("scratch") / "config.json").read_text())
    assert config["num_hidden_layers"] == 2


def test_bf16_weights_train_and_merge_writes_the_training_dtype(worker_run):
    bf16 = {"dtype": "bf16"}
    sft = worker_run.spec("sft", "sft", data="builtin:arithmetic-chat", lora={"r": 4}, model=bf16,
                          train={"precision": "fp32"})
    assert worker_run.run("sft", sft).returncode == 0
    merge = worker_run.spec("final", "merge", input_model=str(worker_run.final("sft")), model=bf16, eval=False)
    done = worker_run.run("merge", merge)
    assert done.returncode == 0, done.stderr[-2000:]
    assert dtypes(worker_run.final("final")) == {"torch.bfloat16"}


def test_gradient_checkpointing_trains_an_adapter_on_cpu(worker_run):
    spec = worker_run.spec("sft", "sft", data="builtin:arithmetic-chat", lora={"r": 4},
                           model={"gradient_checkpointing": True})
    done = worker_run.run("sft", spec)
    assert done.returncode == 0, done.stderr[-2000:]
    with worker_run.store() as store:
        assert len([e for e in store.events(kinds=["metric"], stage="sft") if e.name == "loss"]) == 4
        assert store.events(kinds=["stage_started"], stage="sft")[0].data["gradient_checkpointing"] is True


def test_gradient_checkpointing_is_off_by_default_on_cpu(worker_run):
    spec = worker_run.spec("sft", "sft", data="builtin:arithmetic-chat", lora={"r": 4}, train={"steps": 1})
    assert worker_run.run("sft", spec).returncode == 0
    with worker_run.store() as store:
        assert store.events(kinds=["stage_started"], stage="sft")[0].data["gradient_checkpointing"] is False


def test_quantization_without_a_gpu_fails_the_stage_saying_why(worker_run):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: 4-bit loads (tests/test_gpu.py covers it)")
    spec = worker_run.spec("sft", "sft", data="builtin:arithmetic-chat", lora={"r": 4}, model={"quantization": "4bit"})
    done = worker_run.run("sft", spec)
    assert done.returncode == 2
    failure = json.loads((worker_run.root / "stages" / "sft" / "failure.json").read_text())
    assert failure["type"] == "ModelError" and "needs a CUDA device" in failure["message"]


@pytest.mark.parametrize("model, stage, words", [
    ("{quantization: 4bit}", "{name: sft, kind: sft, data: 'builtin:arithmetic-chat', lora: false}",
     "stages.0.lora: model.quantization 4bit trains only through an adapter"),
    ("{config: {num_hidden_layers: 2}}", "{name: p, kind: pretrain, data: 'builtin:arithmetic-text'}",
     "config: overrides change the architecture: they need init: random"),
])
def test_model_settings_that_cannot_work_are_config_errors(tmp_path, model, stage, words):
    path = tmp_path / "m.yaml"
    path.write_text(f"name: m\nmodel: {model}\nstages:\n  - {stage}\n")
    with pytest.raises(ConfigError) as info:
        load_curriculum(path)
    assert words in str(info.value)
