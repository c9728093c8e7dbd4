"""Chat latency: time to first token and tokens/s through the chat worker vs a bare in-process generate.

Same checkpoint (the sft adapter of a tiny lineage, on its base), same prompt, same settings (greedy,
a fixed number of new tokens). The two sides alternate, round by round, so load from other processes
hits both alike. Goal: worker / bare <= 1.10 for both figures (after load).

    .venv/bin/python bench/chat_latency.py [--rounds 20] [--tokens 64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = [{"role": "user", "content": "What is 12+34?"}]


class FirstTokenClock:
    """A bare streamer: records when the first and last new tokens exist, nothing else."""

    def __init__(self):
        self.prompt_seen, self.count, self.first, self.last = False, 0, None, None

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.last = time.perf_counter()
        self.first = self.first or self.last
        self.count += value.numel()

    def end(self) -> None:
        pass


def bare_round(active, settings) -> tuple[float, float]:
    """TTFT (ms) and tokens/s of model.generate with a streamer, in this process."""
    import torch

    from workers.chat.generate import prompt_text, sampling_args
    from workers.chat.model_pool import using

    started = time.perf_counter()
    enc = active.tokenizer(prompt_text(active.tokenizer, PROMPT, active.format), return_tensors="pt",
                           add_special_tokens=False)
    clock = FirstTokenClock()
    with using(active) as model, torch.no_grad():
        model.generate(**enc, streamer=clock, pad_token_id=active.tokenizer.pad_token_id, **sampling_args(settings))
    return (clock.first - started) * 1000, (clock.count - 1) / (clock.last - clock.first)


def worker_round(session, settings) -> tuple[float, float]:
    """TTFT (ms) and tokens/s seen by the caller of the chat worker (pipe and JSON included)."""
    session.reset()
    reply = session.send(PROMPT[0]["content"], settings)
    return reply.ttft_ms, reply.tokens_per_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    from core.chat_client import ChatSession, ChatWorker, GenerationSettings
    from core.targets import resolve_target
    from tiny_lineage import build_lineage
    from workers.chat.server import cpu_threads
    from workers.chat.model_pool import ModelPool

    torch.set_num_threads(cpu_threads())  # the same thread count the chat worker uses

    runs = Path(tempfile.mkdtemp()) / "runs"
    build_lineage(runs / "20250101-000000-bench")
    target = resolve_target("latest:sft", runs)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    active = ModelPool().activate(target.to_json())
    with ChatWorker() as worker:
        session = ChatSession(worker, target)
        session.load()
        for _ in range(3):  # warm both sides
            worker_round(session, settings), bare_round(active, vars(settings))
        bare, piped = [], []
        for _ in range(args.rounds):
            piped.append(worker_round(session, settings))
            bare.append(bare_round(active, vars(settings)))
    report(bare, piped, args)
    return 0


def report(bare: list, piped: list, args) -> None:
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    import torch

    print(f"chat latency, {args.rounds} alternating rounds, {args.tokens} new tokens, greedy, "
          f"torch threads {torch.get_num_threads()} on {os.cpu_count()} cores")
    print(f"{'':14}{'bare generate':>16}{'chat worker':>14}{'ratio':>8}")
    ttft_b, ttft_w = med(bare, 0), med(piped, 0)
    tps_b, tps_w = med(bare, 1), med(piped, 1)
    print(f"{'TTFT ms':14}{ttft_b:>16.2f}{ttft_w:>14.2f}{ttft_w / ttft_b:>8.2f}")
    print(f"{'tokens/s':14}{tps_b:>16.1f}{tps_w:>14.1f}{tps_b / tps_w:>8.2f}  (ratio: bare/worker, lower is better)")


if __name__ == "__main__":
    sys.exit(main())
