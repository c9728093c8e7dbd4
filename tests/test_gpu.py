"""The CUDA-only paths, for real: skipped on a machine without a GPU (see conftest), run on one that has it.

Each trains the builtin tiny model a few steps through the same worker entry points the supervisor uses.
"""
import pytest
import torch

pytestmark = pytest.mark.gpu
TRAIN = {"steps": 3, "batch_size": 4, "precision": "auto"}


def sft_spec(run, name, **extra):
    return run.spec(name, "sft", data="builtin:arithmetic-chat", lora={"r": 8}, train=dict(TRAIN), **extra)


def test_cuda_training_uses_the_gpu_in_bf16_or_fp16(worker_run):
    result = worker_run.run("sft", sft_spec(worker_run, "sft_cuda", model={"backend": "hf"}))
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        started = store.events(kinds=["stage_started"], stage="sft_cuda")[-1].data
    assert started["device"].startswith("cuda")


def test_unsloth_backend_trains_an_adapter(worker_run):
    pytest.importorskip("unsloth")
    result = worker_run.run("sft", sft_spec(worker_run, "sft_unsloth", model={"backend": "unsloth"}))
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        assert store.events(kinds=["stage_started"], stage="sft_unsloth")[-1].data["backend"] == "unsloth"
    assert (worker_run.final("sft_unsloth") / "adapter_config.json").is_file()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallel needs two GPUs")
def test_two_gpu_data_parallel_over_nccl(worker_run):
    spec = worker_run.spec("sft_ddp", "sft", data="builtin:arithmetic-chat", lora={"r": 8},
                           train={**TRAIN, "nproc": 2}, model={"backend": "hf"})
    result = worker_run.run("sft", spec, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        assert store.events(kinds=["stage_started"], stage="sft_ddp")[-1].data["world_size"] == 2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP shards across two GPUs")
@pytest.mark.parametrize("lora", [None, {"r": 8}])
def test_two_gpu_fsdp_saves_full_weights_and_evaluates(worker_run, lora):
    name = "fsdp_lora" if lora else "fsdp_full"
    spec = worker_run.spec(name, "sft", data="builtin:arithmetic-chat", lora=lora, eval={"max_samples": 8},
                           train={**TRAIN, "nproc": 2, "strategy": "fsdp"},
                           model={"backend": "hf", "gradient_checkpointing": True})
    result = worker_run.run("sft", spec, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        assert "eval/accuracy" in store.final_metrics(name)
    saved = worker_run.final(name) / ("adapter_model.safetensors" if lora else "model.safetensors")
    assert saved.is_file() and saved.stat().st_size > 10_000  # gathered weights, not one rank's empty shard


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_base_trains_an_adapter_with_gradient_checkpointing(worker_run, bits):
    pytest.importorskip("bitsandbytes")
    model = {"backend": "hf", "quantization": bits, "gradient_checkpointing": True}
    result = worker_run.run("sft", sft_spec(worker_run, f"sft_{bits}", model=model))
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        losses = [e.value for e in store.events(kinds=["metric"], stage=f"sft_{bits}") if e.name == "loss"]
    assert losses and (worker_run.final(f"sft_{bits}") / "adapter_config.json").is_file()
