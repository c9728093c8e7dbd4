"""The demo across seeds and thread counts: per-stage held-out accuracy, gates and wall time.

Each cell is one `cockpit run configs/demo.yaml --batch --set seed=S` with OMP_NUM_THREADS=T, run one
after another (run this alone: on 2 cores anything beside it slows both). Not a test: the default
grid (seeds 0 1 2 x threads 1 2) takes about 20 minutes. A cell passes when every gate passed, the
final accuracy is at least --min-final, dpo beats sft and grpo beats dpo by at least --min-rise, and
the curriculum (first stage start -> run finished) took at most --max-wall seconds.

    .venv/bin/python bench/demo_robustness.py [--seeds 0 1 2] [--threads 1 2] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COCKPIT = [sys.executable, "-m", "cli.main"]
ORDER = ("pretrain", "sft", "dpo", "grpo", "final")


def run_cell(config: Path, seed: int, threads: int, runs_dir: Path) -> dict:
    """One demo run; its summary (`cockpit show --json`) plus the exit code."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    base = [*COCKPIT, "--runs-dir", str(runs_dir)]
    code = subprocess.run([*base, "run", str(config), "--batch", "--set", f"seed={seed}"], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    shown = subprocess.run([*base, "show", "latest", "--json"], capture_output=True, text=True, cwd=ROOT)
    return {**json.loads(shown.stdout), "exit_code": code, "seed": seed, "threads": threads}


def cell_row(summary: dict, limits: argparse.Namespace) -> dict:
    """The figures of one cell and whether it passes."""
    stages = {s["name"]: s for s in summary["stages"]}
    acc = {name: stages[name]["metrics"].get("eval/accuracy") if name in stages else None for name in ORDER}
    starts = [s["started_at"] for s in summary["stages"] if s["started_at"]]
    wall = summary["finished_at"] - min(starts) if starts and summary.get("finished_at") else None
    gates_ok = all(not s["gate"] or s["gate"].get("decision") in ("pass", "approve") for s in summary["stages"])
    rises = [_rise(acc, "sft", "dpo"), _rise(acc, "dpo", "grpo")]
    ok = (summary["exit_code"] == 0 and gates_ok and (acc["final"] or 0) >= limits.min_final
          and all(r is not None and r >= limits.min_rise for r in rises)
          and wall is not None and wall <= limits.max_wall)
    return {"seed": summary["seed"], "threads": summary["threads"], "acc": acc, "rises": rises, "wall": wall,
            "gates_ok": gates_ok, "ok": ok}


def _rise(acc: dict, parent: str, child: str) -> float | None:
    if acc[parent] is None or acc[child] is None:
        return None
    return acc[child] - acc[parent]


def table(rows: list[dict], markdown: bool) -> str:
    head = ["seed", "threads", *ORDER, "dpo−sft", "grpo−dpo", "gates", "wall", "cell"]
    lines = [[str(r["seed"]), str(r["threads"]), *[_pct(r["acc"][n]) for n in ORDER],
              *[_pts(x) for x in r["rises"]], "pass" if r["gates_ok"] else "FAIL",
              f"{r['wall']:.0f} s" if r["wall"] else "-", "ok" if r["ok"] else "FAIL"] for r in rows]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head, *lines])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-final", type=float, default=0.98)
    parser.add_argument("--min-rise", type=float, default=0.005)
    parser.add_argument("--max-wall", type=float, default=180.0, help="seconds, first stage start -> run end")
    parser.add_argument("--runs-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="demo-grid-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for seed in args.seeds:
            for threads in args.threads:
                rows.append(cell_row(run_cell(args.config, seed, threads, runs_dir), args))
                print(f"seed {seed} threads {threads}: {'ok' if rows[-1]['ok'] else 'FAIL'}", flush=True)
    print(table(rows, args.markdown))
    walls = [r["wall"] for r in rows if r["wall"]]
    if walls:
        print(f"wall: median {statistics.median(walls):.0f} s, range {min(walls):.0f}-{max(walls):.0f} s")
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} cells pass")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
