"""Worker contract under stress: atomic checkpoints, exact resume, OOM exit code, torchrun, bad input."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

PRETRAIN = dict(data="builtin:arithmetic-text", train={"save_steps": 2, "lr": 3e-3})
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors")
pytestmark = pytest.mark.faults


def losses(run, stage: str, after_id: int = 0) -> dict[int, float]:
    with run.store() as store:
        return {e.step: e.value for e in store.events(after_id, kinds=["metric"], stage=stage) if e.name == "loss"}


class CheckpointWatcher(threading.Thread):
    """Polls checkpoints/ while a worker runs; records any checkpoint seen without all its files."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.partial, self.seen, self.done = folder, [], set(), threading.Event()

    def run(self):
        while not self.done.is_set():
            for ckpt in self.folder.glob("checkpoint-*") if self.folder.is_dir() else []:
                self.seen.add(ckpt.name)
                if not all((ckpt / f).is_file() for f in CHECKPOINT_FILES):
                    self.partial.append(ckpt.name)
            self.done.wait(0.005)


def test_checkpoints_appear_complete_and_resume_is_exact(worker_run):
    spec = worker_run.spec("pre", "pretrain", **PRETRAIN)
    watcher = CheckpointWatcher(worker_run.root / "stages" / "pre" / "checkpoints")
    watcher.start()
    first = worker_run.run("pretrain", spec)
    watcher.done.set()
    watcher.join()
    assert first.returncode == 0, first.stderr[-3000:]
    assert watcher.seen == {"checkpoint-2", "checkpoint-4"} and not watcher.partial
    assert not list((worker_run.root / "stages" / "pre" / ".scratch").glob("checkpoint-*"))
    with worker_run.store() as store:
        saved = store.events(kinds=["checkpoint_saved"], stage="pre")
        mark = store.last_event_id()
    assert [(e.step, e.data["complete"]) for e in saved] == [(2, True), (4, True)]

    checkpoint = worker_run.root / "stages" / "pre" / "checkpoints" / "checkpoint-2"
    again = worker_run.spec("pre", "pretrain", resume_from=str(checkpoint), attempt=2, **PRETRAIN)
    second = worker_run.run("pretrain", again)
    assert second.returncode == 0, second.stderr[-3000:]
    uninterrupted, resumed = losses(worker_run, "pre"), losses(worker_run, "pre", after_id=mark)
    assert sorted(resumed) == [3, 4]
    assert resumed == pytest.approx({s: uninterrupted[s] for s in (3, 4)}, rel=1e-5)


def test_oom_exits_75_and_a_halved_batch_succeeds(worker_run):
    env = {"COCKPIT_FAULT_OOM_AT_STEP": "2", "COCKPIT_FAULT_OOM_MAX_BATCH": "4"}
    failed = worker_run.run("pretrain", worker_run.spec("pre", "pretrain", data="builtin:arithmetic-text"), env=env)
    assert failed.returncode == 75
    with worker_run.store() as store:
        errors = [e.data["message"] for e in store.events(kinds=["log"]) if e.data["level"] == "error"]
    assert errors and errors[-1].startswith("out of memory at step 2")
    retry = worker_run.spec("pre", "pretrain", data="builtin:arithmetic-text", attempt=2,
                            overrides={"batch_size": 4, "grad_accum": 2})
    assert worker_run.run("pretrain", retry, env=env).returncode == 0
    assert (worker_run.final("pre") / "model.safetensors").is_file()


def test_two_processes_with_torchrun_on_cpu(worker_run):
    spec = worker_run.spec("ddp", "pretrain", **PRETRAIN)
    result = worker_run.run("pretrain", spec, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    with worker_run.store() as store:
        started = store.events(kinds=["stage_started"], stage="ddp")
        loss_steps = [e.step for e in store.events(kinds=["metric"], stage="ddp") if e.name == "loss"]
    assert len(started) == 1 and started[0].data["world_size"] == 2
    assert loss_steps == [1, 2, 3, 4]  # rank 0 writes, once per step
    ckpt = worker_run.root / "stages" / "ddp" / "checkpoints" / "checkpoint-4"
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    assert (worker_run.final("ddp") / "model.safetensors").is_file()


def test_bad_data_file_exits_2_with_the_line(worker_run, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "1+1=2"}\n{not json\n')
    result = worker_run.run("pretrain", worker_run.spec("pre", "pretrain", data=str(broken)))
    assert result.returncode == 2
    with worker_run.store() as store:
        messages = [e.data["message"] for e in store.events(kinds=["log"])]
    assert any("broken.jsonl:2" in m for m in messages)


def test_unreadable_spec_exits_2(worker_run, tmp_path):
    assert worker_run.run("sft", tmp_path / "missing.json").returncode == 2


def test_pickle_only_model_folder_is_refused(worker_run, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    result = worker_run.run("eval", worker_run.spec("check", "eval", input_model=str(folder)))
    assert result.returncode == 2
    assert "pickle weights" in result.stdout
