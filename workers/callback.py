"""StoreCallback: trainer events into the run store; finished checkpoints renamed into place."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from core.checkpoints import write_manifest
from core.events import EventKind
from workers.common import wait_for_ranks


class StoreCallback(TrainerCallback):
    """Writes `metric` and `checkpoint_saved` events (rank 0) and moves complete checkpoints.

    Trainer writes `checkpoint-N` into a scratch folder; once it is complete (trainer_state.json is
    written last, and every rank has passed a barrier) rank 0 adds its manifest (core/checkpoints.py)
    and renames it into `checkpoints/`, so a half-written folder never appears there.
    """

    def __init__(self, store, stage: str, scratch: Path, checkpoints: Path):
        self.store, self.stage = store, stage
        self.scratch, self.checkpoints = Path(scratch), Path(checkpoints)
        self.throughput = Throughput()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.store is not None and state.is_world_process_zero and logs:
            self.store.append_metrics(self.stage, state.global_step, logs | self.throughput.figures(logs))

    def on_step_begin(self, args, state, control, **kwargs):
        inject_faults(state.global_step + 1, args.per_device_train_batch_size)

    def on_save(self, args, state, control, **kwargs):
        wait_for_ranks()
        if state.is_world_process_zero:
            self._publish(state.global_step)
        wait_for_ranks()

    def _publish(self, step: int) -> None:
        written = self.scratch / f"checkpoint-{step}"
        if not (written / "trainer_state.json").is_file():
            return
        write_manifest(written)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints / written.name
        if target.exists():  # left by an earlier attempt that ran past this step
            shutil.rmtree(target)
        os.rename(written, target)
        if self.store is not None:
            self.store.append(EventKind.CHECKPOINT_SAVED, stage=self.stage, step=step, now=True,
                              path=str(target), complete=True)


class Throughput:
    """Trained tokens per second between two logs (from TRL's cumulative `num_tokens`, all ranks) and the
    peak CUDA memory allocated by this rank so far."""

    def __init__(self):
        self.last: tuple[float, float] | None = None

    def figures(self, logs: dict) -> dict:
        import torch

        out = {}
        if "num_tokens" in logs:
            now, tokens = time.monotonic(), float(logs["num_tokens"])
            if self.last and now > self.last[0] and tokens > self.last[1]:
                out["train/tokens_per_s"] = (tokens - self.last[1]) / (now - self.last[0])
            self.last = (now, tokens)
        if torch.cuda.is_available():
            out["gpu/peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        return out


def inject_faults(step: int, batch_size: int) -> None:
    """Test-only faults from the environment, each a real failure at a given step:
    OOM for too-large batches, a hang, an output flood, a full disk (file-size limit) before a save."""
    oom_at = os.environ.get("COCKPIT_FAULT_OOM_AT_STEP")
    if oom_at and step == int(oom_at) and batch_size > int(os.environ.get("COCKPIT_FAULT_OOM_MAX_BATCH", "0")):
        import torch

        raise torch.OutOfMemoryError(f"injected: batch {batch_size} does not fit (COCKPIT_FAULT_OOM_AT_STEP)")
    if os.environ.get("COCKPIT_FAULT_FLOOD"):
        _flood(int(os.environ["COCKPIT_FAULT_FLOOD"]))
    disk_full_at = os.environ.get("COCKPIT_FAULT_DISK_FULL_AT_STEP")
    if disk_full_at and step == int(disk_full_at):
        _fill_disk()
    sleep_at = os.environ.get("COCKPIT_FAULT_SLEEP_AT_STEP")
    if sleep_at and step == int(sleep_at):
        while True:
            time.sleep(3600)


def _flood(megabytes: int) -> None:
    """Write `megabytes` MB to stdout and to stderr."""
    import sys

    chunk = "x" * 1023 + "\n"
    for stream in (sys.stdout, sys.stderr):
        stream.write(chunk * (megabytes * 1024))
        stream.flush()


def _fill_disk() -> None:
    """From now on no file of this process may grow past 64 KiB: writes fail with EFBIG, like a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
