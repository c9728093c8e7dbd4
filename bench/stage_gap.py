"""Stage start-up gap: a 3-stage curriculum with forked, prestarted (warm) and cold workers, side by side.

    .venv/bin/python bench/stage_gap.py [--steps 20] [--rounds 1] [--threads N] [--eval N]

Each round runs the same curriculum (pretrain -> sft -> dpo on builtin data, no checkpoints; with
`--eval N` each stage then answers N held-out questions, as the demo's stages do)
with `cockpit run --batch` three times: workers forked from the fork server (a CPU machine's default),
prestarted interpreters (`COCKPIT_FORKSERVER=0`, what a GPU machine does), and cold starts (that and
`COCKPIT_PRESTART=0`). For each stage boundary it
reads from the run store the previous stage's `stage_finished` ts and the next stage's
`stage_started` and first `metric` ts. The first metric includes one training step; both modes pay it.
The `start` column is how the next stage's worker actually started (its `stage_started` event: a fork
and a prestarted interpreter both say warm). Prestarting keeps two stages ahead, started where CPU is idle
(a cold start, a final save followed by evaluation, spare cores; see Supervisor._prestart_next).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
MODES = {"forked": {}, "warm": {"COCKPIT_FORKSERVER": "0"},
         "cold": {"COCKPIT_FORKSERVER": "0", "COCKPIT_PRESTART": "0"}}

CONFIG = """name: stage-gap
defaults:
  lora: {{r: 4, alpha: 8}}
  train: {{steps: {steps}, batch_size: 8, logging_steps: 1, max_length: 32, precision: fp32{threads}}}
stages:
  - {{name: pretrain, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: {evaluation}}}
  - {{name: sft, kind: sft, data: "builtin:arithmetic-chat", eval: {evaluation}}}
  - {{name: dpo, kind: dpo, data: "builtin:arithmetic-preference", eval: {evaluation}}}
"""


def run_once(config: Path, runs: Path, mode_env: dict) -> tuple[list[tuple], float, float]:
    """(boundary, finished->started s, finished->first metric s, start) per boundary, the first
    stage's train_runtime and the wall time of the whole run."""
    from core.runs import list_runs
    from core.store import RunStore

    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "cli.main", "run", str(config), "--batch", "--runs-dir", str(runs)],
                   cwd=ROOT, env={**ENV, **mode_env}, capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    with RunStore(list_runs(runs)[-1].db) as store:
        names = [s["name"] for s in store.stages()]
        gaps = [boundary_gap(store, before, after) for before, after in zip(names, names[1:])]
        return gaps, store.final_metrics(names[0])["train_runtime"], wall


def boundary_gap(store, before: str, after: str) -> tuple[str, float, float, str]:
    """Seconds from `before`'s stage_finished to `after`'s stage_started and to its first metric,
    and whether `after` started warm or cold."""
    finished = store.events(kinds=["stage_finished"], stage=before)[-1].ts
    started = store.events(kinds=["stage_started"], stage=after)[-1]
    metric = store.events(kinds=["metric"], stage=after, limit=1)[0].ts
    return f"{before} -> {after}", started.ts - finished, metric - finished, "warm" if started.data["warm"] else "cold"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps of each stage")
    parser.add_argument("--rounds", type=int, default=1, help="forked/warm/cold triples to run (medians shown)")
    parser.add_argument("--threads", type=int, help="train.threads of every stage (default: all cores)")
    parser.add_argument("--eval", type=int, default=0, help="held-out answers after each stage (default: none)")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    results: dict[str, list] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "stage-gap.yaml"
        evaluation = (f'{{data: "builtin:arithmetic-eval", metrics: [accuracy], max_samples: {opts.eval}}}'
                      if opts.eval else "false")
        config.write_text(CONFIG.format(steps=opts.steps, threads=f", threads: {opts.threads}" if opts.threads else "",
                                        evaluation=evaluation))
        for _ in range(opts.rounds):
            for mode, mode_env in MODES.items():
                results[mode].append(run_once(config, Path(tmp) / mode, mode_env))
    report(results)


def report(results: dict[str, list]) -> None:
    """One line per boundary and mode (medians over rounds), then forked/cold and warm/cold ratios."""
    med = {mode: summarize(runs) for mode, runs in results.items()}
    print(f"{'boundary':20}{'mode':6}{'start':>6}{'-> started (s)':>16}{'-> 1st metric (s)':>19}")
    for i, boundary in enumerate(results["cold"][0][0]):
        for mode in MODES:
            start = results[mode][0][0][i][3]
            print(f"{boundary[0]:20}{mode:6}{start:>6}{med[mode]['started'][i]:16.2f}{med[mode]['metric'][i]:19.2f}")
    for mode in MODES:
        print(f"{mode}: total gap to 1st metric {sum(med[mode]['metric']):.2f} s, first stage train_runtime "
              f"{med[mode]['train']:.2f} s, run wall {med[mode]['wall']:.1f} s")
    cold = med["cold"]
    for mode in ("forked", "warm"):
        fast = med[mode]
        print(f"ratio {mode}/cold: gap to started {sum(fast['started']) / sum(cold['started']):.3f}, gap to 1st "
              f"metric {sum(fast['metric']) / sum(cold['metric']):.3f}, first stage train_runtime "
              f"{fast['train'] / cold['train']:.3f}, run wall {fast['wall'] / cold['wall']:.3f}")


def summarize(runs: list) -> dict:
    """Medians over rounds of each boundary's gaps, the first stage's train_runtime and the wall time."""
    boundaries = len(runs[0][0])
    return {"started": [statistics.median(r[0][i][1] for r in runs) for i in range(boundaries)],
            "metric": [statistics.median(r[0][i][2] for r in runs) for i in range(boundaries)],
            "train": statistics.median(r[1] for r in runs), "wall": statistics.median(r[2] for r in runs)}


if __name__ == "__main__":
    main()
