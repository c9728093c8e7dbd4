"""Soak: SIGKILL the worker at random steps K times across a curriculum, resume each time, then check.

    python bench/soak.py [--kills 10] [--config configs/demo.yaml] [--runs-dir /tmp/soak] [--seed 0]

Checks at the end: the final model exists, every logged step of every stage appears exactly once
in the timeline, and every resume started from a checkpoint that was complete (published by an
atomic rename and holding trainer_state.json).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.launch import DEFAULT_CONFIG, new_run  # noqa: E402
from core.runs import RunPaths  # noqa: E402
from core.status import supervisor_alive  # noqa: E402
from core.store import RunStore  # noqa: E402
from core.supervisor import start_detached  # noqa: E402


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    paths = new_run(args.config, args.runs_dir)
    print(f"soak: run {paths.id}, {args.kills} kills", flush=True)
    t0 = time.monotonic()
    start_supervisor(paths)
    kills = 0
    while kills < args.kills:
        if not kill_at_random_step(paths, rng):
            break  # the curriculum finished before all kills were spent
        kills += 1
        wait_for_supervisor_exit(paths)
        print(f"  kill {kills}: resuming", flush=True)
        start_supervisor(paths)
    wait_for_supervisor_exit(paths)
    elapsed = time.monotonic() - t0
    problems = check(paths)
    print(f"soak: {kills} kills, {elapsed:.0f} s, status {status(paths)}: "
          + ("OK" if not problems else "FAILED\n  " + "\n  ".join(problems)), flush=True)
    return 1 if problems else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="cockpit-soak-")))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def start_supervisor(paths: RunPaths) -> None:
    """Start (or resume) the run detached and wait until its supervisor has taken over."""
    pid = start_detached(paths, gate_policy="approve")
    while True:
        with RunStore(paths.db) as store:
            meta = store.meta()
        if meta.get("supervisor_pid") == pid and meta.get("status") == "running":
            return
        time.sleep(0.1)


def kill_at_random_step(paths: RunPaths, rng: random.Random) -> bool:
    """SIGKILL the worker group once its stage passes a random step beyond where this attempt started.

    Returns False if the run ended first.
    """
    target: tuple[str, int, int] | None = None  # (stage, attempt, step)
    while True:
        with RunStore(paths.db) as store:
            meta, stages = store.meta(), store.stages()
            running = next((s for s in stages if s["status"] == "running" and s["total_steps"]), None)
            step = store.last_step(running["name"]) if running else None
        if meta.get("status") not in ("running", "created") and not supervisor_alive(meta):
            return False
        if running and (target is None or target[:2] != (running["name"], running["attempt"])):
            start = step or 0
            target = (running["name"], running["attempt"], rng.randint(start + 1, running["total_steps"] - 1)) \
                if start + 1 < running["total_steps"] else None
        if target and step is not None and step >= target[2] and meta.get("workers"):
            os.killpg(meta["workers"][0]["pgid"], signal.SIGKILL)
            print(f"  killed {target[0]} (attempt {target[1]}) at step {step}", flush=True)
            return True
        time.sleep(0.05)


def wait_for_supervisor_exit(paths: RunPaths) -> None:
    time.sleep(0.5)
    while True:
        with RunStore(paths.db) as store:
            meta = store.meta()
        if meta.get("status") != "running" or not supervisor_alive(meta):
            return
        time.sleep(0.3)


def status(paths: RunPaths) -> str:
    with RunStore(paths.db) as store:
        return store.get_meta("status")


def check(paths: RunPaths) -> list[str]:
    problems = []
    with RunStore(paths.db) as store:
        stages = store.stages()
        saved = {e.data["path"]: e for e in store.events(kinds=["checkpoint_saved"])}
        resumes = store.events(kinds=["resumed"])
        for stage in stages:
            steps = [e.step for e in store.events(kinds=["metric"], stage=stage["name"]) if e.name == "loss"]
            dupes = [s for s, n in Counter(steps).items() if n > 1]
            if dupes:
                problems.append(f"{stage['name']}: steps logged twice: {dupes[:10]}")
    final = paths.stage_final(stages[-1]["name"])
    if not any(final.glob("*.safetensors")):
        problems.append(f"no final model in {final}")
    for ev in resumes:
        ckpt = ev.data.get("from_checkpoint")
        if ckpt and (ckpt not in saved or saved[ckpt].id > ev.id or not (Path(ckpt) / "trainer_state.json").exists()):
            problems.append(f"{ev.stage}: resumed from {ckpt}, which was not a complete published checkpoint")
    return problems


if __name__ == "__main__":
    sys.exit(main())
