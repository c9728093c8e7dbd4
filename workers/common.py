"""The lifecycle every worker shares: read spec, open store, setup -> train -> save final -> eval -> cleanup.

A worker module defines `main(spec) -> int` and ends with `leave(entry(main))`. Only rank 0
writes events and final outputs. Exit codes: 0 ok, 1 failure, 2 bad spec/data, 75 out of memory.
"""
from __future__ import annotations

import atexit
import ctypes
import faulthandler
import json
import os
import shutil
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from core.errors import SpecError, UserError
from core.events import EventKind
from core.runs import FAILURE_FILE
from core.worker_proc import STACKS_SIGNAL
from core.worker_spec import LATEST, WorkerSpec, read_spec
from workers.modeling import count_params, load_full, load_options, load_tokenizer, resolve_source

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC, EXIT_OOM = 0, 1, 2, 75
QUIET_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
PR_SET_NAME = 15  # prctl(2)
_KEPT: list = []  # what a worker built, alive until `leave` ends the process without destructors
WARM_START = False  # set by workers.warm when this interpreter was prestarted before its spec existed


class Stage:
    """One worker's view of its stage: the typed spec, paths, rank, and the event store (rank 0 only)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.config = spec.stage
        self.name, self.kind = self.config.name, self.config.kind
        self.train = spec.train()
        self.lora = self.config.lora or None
        self.output_dir = Path(spec.output_dir)
        self.scratch = self.output_dir / ".scratch"
        self.checkpoints = self.output_dir / "checkpoints"
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.store = None
        self.trainer = None  # set once built, so failures can name the step

    def open_store(self) -> None:
        """The run store; db "-" (a SkyPilot job, far from it): events as lines of standard output."""
        if self.rank == 0:
            from core.event_relay import LineStore
            from core.store import RunStore

            self.store = LineStore() if self.spec.db == "-" else RunStore(self.spec.db)
            self.store.start_autoflush()

    def resume_point(self) -> str | None:
        """The checkpoint to resume from: the spec's, or with "latest" (a job SkyPilot restarts with the same
        spec) the newest one in this stage's checkpoints that verifies."""
        if self.spec.resume_from != LATEST:
            return self.spec.resume_from
        from core.checkpoints import checkpoint_step, resume_checkpoint

        found, _ = resume_checkpoint(self.checkpoints)
        if found is not None:
            self.emit(EventKind.RESUMED, step=checkpoint_step(found), from_checkpoint=str(found))
        return str(found) if found else None

    def log(self, message: str, level: str = "info") -> None:
        print(f"[{level}] {message}", flush=True)
        if self.store is not None:
            self.store.append(EventKind.LOG, stage=self.name, now=level == "error", level=level, message=message)

    def emit(self, kind: EventKind, **fields) -> None:
        if self.store is not None:
            self.store.append(kind, stage=self.name, now=True, **fields)

    def emit_metrics(self, step: int, metrics: dict) -> None:
        """Metric events (TRL-style names) outside the trainer's own logging, e.g. before training."""
        if self.store is not None:
            self.store.append_metrics(self.name, step, metrics)

    def current_step(self) -> int:
        return self.trainer.state.global_step + 1 if self.trainer is not None else 0

    def rows_needed(self) -> int:
        """Rows the configured steps consume; data beyond that is not tokenized."""
        t = self.train
        return t.steps * t.batch_size * t.grad_accum * self.world_size

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def entry(main) -> int:
    """Run `main(stage)` for the spec named on the command line; map failures to exit codes."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    faulthandler.register(STACKS_SIGNAL, all_threads=True)  # `kill -USR1 PID`: where a hung stage is
    try:
        if len(sys.argv) != 2:
            raise SpecError("usage: python -m workers.stages.<kind> <spec.json>")
        stage = Stage(read_spec(sys.argv[1]))
    except SpecError as exc:
        print(f"[error] {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    _KEPT.append(stage)  # freed only by `leave`'s exit: a torchrun rank once hung in gloo's teardown as they were
    name_process(stage.name)
    stage.open_store()
    try:
        pin_threads(stage)
        main(stage)
        leave_process_group()
        return EXIT_OK
    except BaseException as exc:  # noqa: BLE001  (every failure must reach the store)
        return _failure(stage, exc)
    finally:
        stage.close()


def name_process(stage: str) -> None:
    """`cockpit:<stage>` in top, `ps -o comm` and /proc/PID/comm (Linux keeps 15 bytes), not `python`, which a
    forked worker would otherwise share with its fork server."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, f"cockpit:{stage}".encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the name stays
        pass


def leave(code: int) -> NoReturn:
    """Exit with `code` without tearing the interpreter down object by object: atexit handlers still run and
    output is flushed, but the ~1 s spent freeing torch, transformers and the model is not (1.13 s vs 0.13 s
    after the imports alone), and that second sat between every two stages."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def wait_for_ranks() -> bool:
    """Wait for every rank when running under torchrun; False (nothing to wait for) in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    return True


def leave_process_group() -> None:
    """Under torchrun: wait for every rank (rank 0 still saves and evaluates), then tear the group down; a gloo
    group left to interpreter exit can abort its process ("terminate called without an active exception")."""
    if wait_for_ranks():
        import torch.distributed as dist

        dist.destroy_process_group()


def pin_threads(stage: Stage) -> None:
    """Fix torch's CPU threads (train.threads, else $OMP_NUM_THREADS, else the usable cores); a warm
    interpreter imported torch before it knew the stage, so `set_num_threads` is what counts."""
    import torch

    from core.worker_proc import pinned_threads

    threads = pinned_threads(stage.train.threads, stage.world_size)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _failure(stage: Stage, exc: BaseException) -> int:
    _record_failure(stage, exc)
    if _is_oom(exc):
        stage.log(f"out of memory at step {stage.current_step()}: {exc}", "error")
        return EXIT_OOM
    tail = "".join(traceback.format_exception(exc)[-6:])
    stage.log(f"{type(exc).__name__}: {exc}\n{tail}", "error")
    if isinstance(exc, UserError):
        return EXIT_BAD_SPEC
    return EXIT_FAILED


def _record_failure(stage: Stage, exc: BaseException) -> None:
    """The exception's type and message for the supervisor's stage record (the first rank to fail wins);
    a full disk may refuse even this, and the supervisor then reads the log."""
    record = {"type": type(exc).__name__, "message": str(exc), "step": stage.current_step()}
    try:
        fd = os.open(stage.output_dir / FAILURE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
    except OSError:
        pass


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()[:200]


def quiet_libraries() -> None:
    """No progress bars in the worker log (transformers, datasets)."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


# -- outputs ------------------------------------------------------------------------------------
def save_final(stage: Stage, model, tokenizer, step: int, base: str | None, state_dict: dict | None = None) -> Path:
    """`<output_dir>/final/`: written to a temp sibling, renamed into place when complete; `state_dict`: the
    weights to write when the model's own are sharded (FSDP)."""
    final = stage.output_dir / "final"
    tmp = stage.output_dir / f".final.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
    tokenizer.save_pretrained(tmp)
    kind = "adapter" if (tmp / "adapter_config.json").is_file() else "full"
    meta = {"type": kind, "base": base if kind == "adapter" else None, "stage": stage.name, "step": step}
    (tmp / "cockpit.json").write_text(json.dumps(meta, indent=1))
    replace_dir(tmp, final)
    return final


def replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def record_eval(stage: Stage, model, tokenizer, step: int) -> dict:
    """Evaluate the final model when the stage asks for it; one `eval_result` event per metric."""
    spec = stage.config.evaluation()
    if not spec or stage.rank != 0:
        return {}
    from workers.heldout import evaluate

    results = evaluate(model, tokenizer, spec, stage.kind, starting=lambda: starting_model(stage, model),
                       warn=lambda text: stage.log(text, level="warning"))
    for name, (value, data) in results.items():
        stage.emit(EventKind.EVAL_RESULT, step=step, name=name, value=value, **data)
        stage.log(f"{name} = {value:.4f} on {data['samples']} samples ({data['format']} format)")
    return results


@contextmanager
def starting_model(stage: Stage, model):
    """The model a training stage started from: its adapter switched off, else its input loaded beside it."""
    if hasattr(model, "disable_adapter") and getattr(model, "peft_config", None):
        with model.disable_adapter():
            yield model
        return
    before = load_full(resolve_source(stage.spec), stage.spec.model.trust_remote_code, {"dtype": model.dtype})
    yield before.to(model.device).eval()


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def started(stage: Stage, total_steps: int, backend: str, params: dict, **extra) -> None:
    import torch

    stage.emit(EventKind.STAGE_STARTED, attempt=stage.spec.attempt, total_steps=total_steps, pid=os.getpid(),
               world_size=stage.world_size, backend=backend, device=device_name(), params=params,
               threads=torch.get_num_threads(), warm=WARM_START, **extra)


# -- inputs without training (merge, eval) ------------------------------------------------------
def source_step(source: str) -> int:
    """The step recorded in a stage output's cockpit.json (0 when there is none)."""
    meta = Path(source) / "cockpit.json"
    return (json.loads(meta.read_text()).get("step") or 0) if meta.is_file() else 0


def load_input(stage):
    """The input model with every adapter of its chain merged in, and its tokenizer."""
    quiet_libraries()
    source = resolve_source(stage.spec)
    trust = stage.spec.model.trust_remote_code
    model = load_full(source, trust, load_options(stage.spec.model, quantize=False))  # merge writes this dtype
    tokenizer = load_tokenizer(source, trust)
    started(stage, 0, "hf", count_params(model))
    stage.log(f"loaded {source} with its adapter chain merged ({count_params(model)['total']:,} parameters)")
    return source, model, tokenizer
