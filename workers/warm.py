"""A prestarted worker interpreter: the heavy imports first, the stage spec later.

    python -m workers.warm KIND      (started by core.worker_proc.WarmWorker; stdin is the handoff channel)

It lowers its own CPU priority (`lower_priority`), imports torch, transformers, trl, peft, datasets
and the kind's worker module (core.kinds), then blocks reading one JSON line `{"spec": PATH, "log": PATH}` from stdin. At EOF (the supervisor
died or dropped it) it exits 0 having run nothing. On handoff it moves stdout/stderr to the stage's
log, stdin to /dev/null, and runs the worker module exactly as `python -m workers.stages.<kind> SPEC` would:
same `entry(main)`, same exit codes. The supervisor restores its priority at the handoff.
"""
from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import time

from core.kinds import KINDS

PRESTART_NICE = 10  # where SCHED_IDLE could not be lifted again (not root)
HEAVY_MODULES = ("torch", "transformers", "trl", "peft", "datasets")


def lower_priority() -> None:
    """Run on idle CPU only, so the stage training meanwhile keeps its cores: SCHED_IDLE where the
    supervisor can lift it at the handoff (root), else nice +10, which an unprivileged one cannot undo."""
    if os.geteuid() == 0:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(PRESTART_NICE)


def preload(kind: str) -> None:
    """Import what the worker of `kind` needs (trl imports its trainers lazily: touch the one it uses)."""
    for name in HEAVY_MODULES:
        importlib.import_module(name)
    if KINDS[kind].trainer:  # a TRL trainer's name, or module.Class
        module, _, name = KINDS[kind].trainer.rpartition(".")
        getattr(sys.modules[module or "trl"], name)
    importlib.import_module(KINDS[kind].worker)


def redirect(log: str) -> None:
    """stdout and stderr to the end of `log`, stdin from /dev/null (workers never read stdin)."""
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.dup2(null, 0)
    os.close(out)
    os.close(null)


def main(argv: list[str]) -> int:
    """Preload, wait for the handoff, then run the stage's worker module as `__main__`."""
    kind = argv[1]
    lower_priority()
    t0 = time.monotonic()
    preload(kind)
    ready = time.monotonic()
    print(f"[info] warm {kind} interpreter ready after {ready - t0:.1f} s (pid {os.getpid()})", flush=True)
    line = sys.stdin.buffer.readline()
    if not line:
        print("[info] handoff channel closed before a spec came; exiting", flush=True)
        return 0
    handoff = json.loads(line)
    redirect(handoff["log"])
    print(f"[info] warm start: imports took {ready - t0:.1f} s, ready {time.monotonic() - ready:.1f} s "
          "before the handoff", flush=True)
    run_worker_module(kind, handoff["spec"])
    return 0


def run_worker_module(kind: str, spec: str) -> None:
    """Run the kind's worker module on `spec` exactly as `python -m workers.stages.<kind> SPEC` would, in this
    interpreter whose imports are done (a handed-off warm one, or a fork of the fork server)."""
    import workers.common

    workers.common.WARM_START = True
    sys.argv = [sys.argv[0], spec]
    sys.modules.pop(KINDS[kind].worker, None)  # as under `python -m`, the module runs once, as __main__ only
    runpy.run_module(KINDS[kind].worker, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
