"""train.strategy: fsdp — checked at load, handed to the trainer as accelerate's FSDP2, refused by a CPU worker.

FSDP itself cannot run here: accelerate 1.15 turns it on only for GPU-type devices (on CPU with gloo it
trains DDP instead, silently). So the GPU is the one thing these tests stand in for (`cuda=True` below),
and a real two-process CPU worker shows the refusal.
"""
import json

import pytest
from trl import SFTConfig

from conftest import WorkerRun
from core.config_load import load_curriculum
from core.errors import ConfigErrors
from core.runs import FAILURE_FILE
from core.worker_spec import read_spec
from workers.common import Stage
from workers.training import fsdp_args

STAGE = "  - {name: s, kind: sft, data: 'builtin:arithmetic-chat', lora: false, train: {nproc: 2, strategy: fsdp}}\n"


@pytest.mark.parametrize("model, stage, words", [
    ("{base: 'builtin:tiny-qwen3'}", STAGE.replace("nproc: 2", "nproc: 1"), "set train.nproc (GPUs per node)"),
    ("{base: 'builtin:tiny-qwen3', backend: unsloth}", STAGE, "use model.backend: hf for fsdp"),
    ("{base: 'builtin:tiny-qwen3', quantization: 4bit}", STAGE.replace("lora: false", "lora: {r: 8}"),
     "load the model with quantization: none (not 4bit)"),
    ("{base: 'builtin:tiny-qwen3'}", STAGE.replace("}}", "}, trl: {fsdp: true}}"),
     "trl.fsdp: fsdp is set by train.strategy"),
])
def test_fsdp_is_checked_at_load(tmp_path, model, stage, words):
    config = tmp_path / "c.yaml"
    config.write_text(f"name: c\nmodel: {model}\nstages:\n{stage}")
    with pytest.raises(ConfigErrors) as err:
        load_curriculum(config)
    assert words in str(err.value) and "c.yaml:4" in str(err.value)


def test_a_slurm_stage_on_two_nodes_may_shard_with_one_process_each(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nstages:\n" + STAGE.replace("nproc: 2", "nproc: 1").replace(
        "}}", "}, launch: {via: slurm, slurm: {nodes: 2}}}"))
    assert load_curriculum(config).stages[0].train.strategy == "fsdp"


def test_the_trainer_gets_fsdp2_with_fsdps_own_checkpointing(tmp_path):
    stage = Stage(read_spec(WorkerRun(tmp_path / "run").spec(
        "s", "sft", data="builtin:arithmetic-chat", lora=None, model={"gradient_checkpointing": True},
        train={"nproc": 2, "strategy": "fsdp"}, trl={"fsdp_config": {"cpu_offload": True}})))
    args = fsdp_args(stage, SFTConfig, cuda=True)  # stands in for a GPU
    config = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, **args)
    assert config.fsdp is True and not config.activation_checkpointing  # FSDP checkpoints, not the trainer
    plugin = config.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["activation_checkpointing"] is True
    assert plugin["state_dict_type"] == "FULL_STATE_DICT" and plugin["cpu_offload"] is True  # trl's fsdp_config
    ddp = Stage(read_spec(WorkerRun(tmp_path / "run2").spec("s", "sft", data="builtin:arithmetic-chat", lora=None)))
    assert fsdp_args(ddp, SFTConfig, cuda=True) == {}


def test_a_cpu_worker_refuses_fsdp_rather_than_train_ddp(worker_run):
    spec = worker_run.spec("s", "sft", data="builtin:arithmetic-chat", lora=None,
                           train={"nproc": 2, "strategy": "fsdp"})
    result = worker_run.run("sft", spec, nproc=2)
    assert result.returncode != 0
    with worker_run.store() as store:
        assert store.last_step("s") is None  # not one step trained
    # what the supervisor reports: the failure record the first failing rank writes (torchrun may end rank 0
    # before its log event reaches the store, once rank 1 has failed the same way)
    failure = json.loads((worker_run.root / "stages" / "s" / FAILURE_FILE).read_text())
    assert failure["type"] == "SpecError" and failure["message"].startswith("train.strategy: fsdp needs GPUs")
