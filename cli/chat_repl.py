"""`cockpit chat` and `cockpit compare`: the command-line front-ends of the chat worker."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.chat_client import (TEXT_MODEL_NOTE, ChatSession, ChatWorker, GenerationSettings, check_prompts_file,
                              prompt_set, run_compare)
from core.runs import runs_dir
from core.targets import MAX_COMPARED, resolve_target, resolve_targets

TARGET_HELP = "RUN:STAGE, RUN:STAGE@STEP, RUN:base, or a model folder (RUN may be 'latest')"


def add_chat_commands(sub) -> None:
    """Register `chat` and `compare` on the CLI's subcommand table."""
    p = sub.add_parser("chat", help="chat with a checkpoint (a stage, an intermediate step, the base, a folder)")
    p.add_argument("target", help=TARGET_HELP)
    p.add_argument("--prompt", help="ask once, print the reply and exit (for scripts)")
    _generation_options(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("compare", help=f"compare 2-{MAX_COMPARED} checkpoints on the same prompts")
    p.add_argument("targets", nargs="+", metavar="TARGET", help=TARGET_HELP + "; a lone RUN means its lineage")
    p.add_argument("--prompts", type=Path, help="prompts file (.jsonl with prompt or messages and optional "
                                                "answer, or .txt); default: the stage's eval set")
    p.add_argument("--limit", type=int, help="use at most this many prompts")
    p.add_argument("--max-new-tokens", type=int, help="tokens per output (default: the eval's, 64 for a file)")
    p.add_argument("--show", type=int, default=10, help="prompts shown side by side, those where the targets "
                                                        "differ or one is wrong first (default: %(default)s)")
    p.add_argument("--only-diff", action="store_true", help="show only prompts where the targets differ or one "
                                                             "is wrong")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def _generation_options(p) -> None:
    d = GenerationSettings()
    p.add_argument("--temperature", type=float, help=f"0 = greedy (default: 0 with --prompt, so a script gets the "
                                                     f"same answer every time; {d.temperature} in a conversation)")
    p.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="default: %(default)s")
    p.add_argument("--system", default=d.system, help="system prompt (default: none)")


def cmd_chat(args) -> int:
    target = resolve_target(args.target, runs_dir(args.runs_dir))
    temperature = args.temperature if args.temperature is not None else \
        0.0 if args.prompt is not None else GenerationSettings().temperature
    settings = GenerationSettings(temperature, args.top_p, args.max_new_tokens, args.system)
    with ChatWorker() as worker:
        session = ChatSession(worker, target)
        loaded = session.load()
        if args.prompt is not None:
            reply = session.send(args.prompt, settings)
            print(reply.text)
            if reply.expert:
                print(f"  (answered by {reply.expert})", file=sys.stderr)
            return 0
        print(f"chatting with {target.label} (loaded in {loaded['load_s']:.2f} s). Ctrl+C stops a reply; "
              "/reset starts over; /quit or Ctrl+D leaves.", flush=True)
        if loaded["format"] == "text":
            print(TEXT_MODEL_NOTE, flush=True)
        return _interactive(session, settings)


def _interactive(session: ChatSession, settings: GenerationSettings) -> int:
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            session.reset()
            continue
        if text:
            _answer(session, text, settings)


def _answer(session: ChatSession, text: str, settings: GenerationSettings) -> None:
    """Stream one reply; Ctrl+C stops the generation and keeps what came so far."""
    print(f"{session.target.label}> ", end="", flush=True)
    reply = session.send(text, settings, on_text=lambda t: print(t, end="", flush=True))
    mark = " [stopped]" if reply.stopped else ""
    speed = f", {reply.tokens_per_s:.0f} tok/s" if reply.tokens_per_s else ""
    ttft = f"first token {reply.ttft_ms:.0f} ms" if reply.ttft_ms is not None else "no tokens"
    expert = f"answered by {reply.expert}, " if reply.expert else ""
    print(mark, flush=True)
    print(f"  ({expert}{ttft}{speed})", file=sys.stderr, flush=True)


def cmd_compare(args) -> int:
    targets = resolve_targets(args.targets, runs_dir(args.runs_dir))
    prompts = prompt_set(targets, check_prompts_file(args.prompts) if args.prompts else None, args.limit,
                         args.max_new_tokens)
    progress = None if args.json else (lambda label, done, total: print(
        f"[{done + 1}/{total}] {label}", file=sys.stderr, flush=True))
    with ChatWorker() as worker:
        result = run_compare(worker, targets, prompts, progress)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    from cli.tables import terminal
    from tui.compare_tables import metrics_table, outputs_table

    console = terminal()
    console.print(outputs_table(result, args.show, only_notable=args.only_diff))
    console.print(metrics_table(result))
    console.print(f"{len(targets)} targets, {result.bases_loaded} base(s) loaded, {result.seconds:.1f} s")
    return 0
