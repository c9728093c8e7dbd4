"""TUI responsiveness under a fast writer: write->screen latency, key latency, RSS, idle CPU.

    .venv/bin/python bench/tui_ingest.py [--rate 5000] [--seconds 20] [--points 1000000] [--idle 10]

A writer *process* inserts `--rate` metric events/s (5 metrics a step, committed every 20 ms) into a
real run store while the cockpit (headless, run_test) is attached. Latency is measured from each
event's commit time (its `ts`) to the screen refresh that first shows it. Then the writer tops the
store up to `--points` metric events as fast as it can, and the TUI's RSS is read once caught up.
Last, the run is marked finished and the TUI's CPU use is measured while it sits idle, then a bare
Textual app's (one line and a footer) for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/recorded.py: the recorded demo run

import tui  # noqa: E402,F401  (first: it sets the cockpit's frame rate before textual loads)
from textual import events  # noqa: E402
from textual.app import App  # noqa: E402
from textual.widgets import Footer, Static  # noqa: E402
from core.runs import RunPaths  # noqa: E402
from core.store import RunStore  # noqa: E402
from recorded import DEMO, wait_until  # noqa: E402
from tui.app import CockpitApp  # noqa: E402
from tui.screens.run import RunScreen  # noqa: E402

METRICS = ("loss", "learning_rate", "grad_norm", "reward", "kl")
TICK_S = 0.02


def make_run(root: Path) -> RunPaths:
    from core.config_load import load_curriculum

    cur = load_curriculum(DEMO)
    paths = RunPaths(root / "bench-run")
    paths.root.mkdir(parents=True)
    stages = [{"name": "grpo", "kind": "grpo", "from": None, "total_steps": 10_000_000}]
    meta = {"id": paths.id, "name": "bench", "created_at": time.time(), "status": "running",
            "heartbeat": time.time(), "config": cur.model_dump(mode="json", by_alias=True)}
    RunStore.create(paths.db, meta, stages).close()
    with RunStore(paths.db) as store:
        store.update_stage("grpo", status="running", attempt=1, started_at=time.time())
        store.append("stage_started", stage="grpo", now=True, attempt=1, total_steps=10_000_000)
    return paths


def writer(db: str, rate: int, seconds: float, total: int) -> int:
    """Paced phase at `rate` events/s, then as fast as possible up to `total` metric events."""
    store = RunStore(db, flush_s=3600, batch=10 ** 9)
    per_tick = max(rate * TICK_S / len(METRICS), 1)
    step, written, start, owed = 0, 0, time.monotonic(), 0.0
    while time.monotonic() - start < seconds:
        owed += per_tick
        while owed >= 1:
            step += 1
            owed -= 1
            store.append_metrics("grpo", step, {m: 1.0 / (1 + step * 1e-4) for m in METRICS})
            written += len(METRICS)
        store.flush()
        time.sleep(max(TICK_S - (time.monotonic() - start) % TICK_S, 0))
    while written < total:
        for _ in range(2000):
            step += 1
            store.append_metrics("grpo", step, {m: 1.0 / (1 + step * 1e-4) for m in METRICS})
        written += 2000 * len(METRICS)
        store.flush()
    store.close()
    return written


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


async def measure(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="tui-bench-"))
    paths = make_run(root)
    reader = RunStore(paths.db)
    latencies: list[float] = []
    last_shown = [reader.last_event_id()]

    paced_until = [float("inf")]

    def on_applied(snap) -> None:
        now = time.time()
        if now > paced_until[0]:
            return
        rows = reader.events(after_id=last_shown[0], kinds=["metric"], limit=1)
        if rows and rows[0].id <= snap.last_event_id:
            latencies.append(now - rows[0].ts)  # the oldest event this refresh brought
        last_shown[0] = snap.last_event_id

    app = CockpitApp(root, paths, blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.applied_count > 0)
        screen: RunScreen = app.screen
        screen.on_applied = on_applied
        proc = subprocess.Popen([sys.executable, __file__, "--writer", str(paths.db), "--rate", str(args.rate),
                                 "--seconds", str(args.seconds), "--points", str(args.points)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        paced_until[0] = time.time() + args.seconds
        cpu0, t0 = cpu_seconds(), time.monotonic()
        keys = await key_latencies(pilot, screen, args.seconds)
        busy = (cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
        while proc.poll() is None:
            await pilot.pause(0.1)
        written = int(proc.stdout.read().strip() or 0)
        target = reader.last_event_id()
        await wait_until(pilot, lambda: screen.snapshot.last_event_id >= target, timeout_s=600)
        rss = psutil.Process().memory_info().rss
        points = sum(len(s.xs) for s in screen.snapshot.series)
        with RunStore(paths.db) as store:
            store.set_meta(status="completed")
        await wait_until(pilot, lambda: screen.snapshot.status == "completed")
        await pilot.pause(1.5)
        idle = await idle_cpu(pilot, args.idle)
    return {"events_written": written, "latency_ms": [x * 1000 for x in latencies], "keys_ms": keys,
            "rss_mb": rss / 2 ** 20, "points_on_screen": points, "idle_cpu_pct": idle, "busy_cpu_pct": busy}


async def key_latencies(pilot, screen: RunScreen, seconds: float) -> list[float]:
    """Send `]` every 0.25 s as a terminal would; time until the refresh showing the new metric."""
    out, end = [], time.monotonic() + seconds
    await asyncio.sleep(1.0)
    while time.monotonic() < end - 0.5:
        before = screen.metric
        t0 = time.perf_counter()
        pilot.app.post_message(events.Key("right_square_bracket", "]"))
        while screen.metric == before:
            await asyncio.sleep(0.001)
        shown = asyncio.get_running_loop().create_future()
        screen.call_after_refresh(lambda: shown.done() or shown.set_result(time.perf_counter()))
        out.append((await shown - t0) * 1000)
        await asyncio.sleep(0.25)
    return out


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    return sum(psutil.Process().cpu_times()[:2])


async def idle_cpu(pilot, seconds: float) -> float:
    c0, t0 = cpu_seconds(), time.monotonic()
    await pilot.pause(seconds)
    return (cpu_seconds() - c0) / (time.monotonic() - t0) * 100


class BareApp(App):
    """The floor the idle figure is compared with: a Textual app showing one line and a footer."""

    def compose(self):
        yield Static("bare")
        yield Footer()


async def bare_idle(seconds: float) -> float:
    async with BareApp().run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.5)
        return await idle_cpu(pilot, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=5000, help="metric events per second in the paced phase")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the paced phase")
    ap.add_argument("--points", type=int, default=1_000_000, help="metric events in the store at the end")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle-CPU measurement")
    ap.add_argument("--writer", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        print(writer(args.writer, args.rate, args.seconds, args.points))
        return
    r = asyncio.run(measure(args))
    lat, keys = r["latency_ms"], r["keys_ms"]
    print(f"writer: {args.rate} metric events/s for {args.seconds:.0f} s, then up to {r['events_written']:,} events")
    print(f"write->screen latency: p50 {pct(lat, .5):.0f} ms  p99 {pct(lat, .99):.0f} ms  max {max(lat):.0f} ms "
          f"({len(lat)} refreshes, {len(lat) / args.seconds:.1f}/s; the TUI used {r['busy_cpu_pct']:.0f} % of a core)")
    print(f"key->screen latency under load: p50 {pct(keys, .5):.0f} ms  p99 {pct(keys, .99):.0f} ms  "
          f"max {max(keys):.0f} ms ({len(keys)} presses)")
    print(f"TUI RSS after {r['events_written']:,} metric events: {r['rss_mb']:.0f} MB "
          f"({r['points_on_screen']:,} points kept for the charts)")
    bare = asyncio.run(bare_idle(args.idle))
    print(f"idle CPU attached to a finished run: {r['idle_cpu_pct']:.2f} % of one core over {args.idle:.0f} s "
          f"(a bare Textual app: {bare:.2f} %)")


if __name__ == "__main__":
    main()
