"""`cockpit`: the command line. Exit codes: 0 ok, 1 stage failed, 2 usage/config error, 3 gate failed,
4 detached (the run goes on), 130 stopped."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.errors import UserError
from core.events import GATE_POLICIES, GATE_STOPPED, STAGE_OK, Decision, EventKind, RunStatus, StageStatus
from core.kinds import KINDS
from core.runs import find_run, list_runs, runs_dir

EPILOG = """examples:
  cockpit run                        run the embedded demo (TUI with a terminal, batch without)
  cockpit run my.yaml --batch        headless, gates decided by --gate-policy (default: rules)
  cockpit run --set seed=1           the demo with a config value overridden (repeatable --set KEY=VALUE)
  cockpit check my.yaml              validate a curriculum and print its stage plan (creates nothing)
  cockpit attach latest              open the cockpit on a running or finished run
  cockpit show latest --json         the run as JSON (stages, metrics, gate decisions)
  cockpit gate latest sft approve    decide a pending manual gate from another terminal
  cockpit rollouts latest grpo       what the RL policy generated at its newest stored step, with rewards
  cockpit serve                      the cockpit in a browser on http://127.0.0.1:8000 (forward it over SSH)
exit codes: 0 done, 1 a stage failed, 2 usage or config error, 3 a gate failed or was rejected,
  4 detached from the cockpit while the run goes on, 130 stopped
"""
EXIT_DETACHED = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cockpit", description="A training cockpit for LLM post-training "
                                     "curricula.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", help="where runs live (default: $COCKPIT_RUNS_DIR or ./runs)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help="where runs live (default: "
                        "$COCKPIT_RUNS_DIR or ./runs)")
    sub = _Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

    p = sub.add_parser("run", help="start a curriculum (default: configs/demo.yaml)")
    p.add_argument("config", nargs="?", type=Path, help="curriculum YAML (default: the embedded demo)")
    p.add_argument("--batch", action="store_true", help="no TUI: run in the foreground and print progress")
    _overrides(p)
    _gate_policy(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a curriculum (schema, data files, rewards, gates) and print its stage "
                                     "plan; creates nothing")
    p.add_argument("config", type=Path, help="curriculum YAML")
    _overrides(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("resume", help="continue a failed, stopped or interrupted run from its last complete "
                                      "checkpoint")
    p.add_argument("run", help="run id (or unique prefix) or 'latest'")
    p.add_argument("--batch", action="store_true", help="no TUI: run in the foreground and print progress")
    _gate_policy(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="show one run: stages, metrics, gates")
    p.add_argument("run", help="run id (or unique prefix) or 'latest'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rollouts", help="an RL stage's stored completions: turns, tool calls, each reward's value")
    p.add_argument("run", help="run id (or unique prefix) or 'latest'")
    p.add_argument("stage", help="a grpo stage of the run")
    p.add_argument("--step", type=int, help="the step to show (default: the newest step stored)")
    p.add_argument("--all", action="store_true", help="every stored step, oldest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollouts)

    p = sub.add_parser("attach", help="open the cockpit TUI on a run")
    p.add_argument("run", nargs="?", help="run id (or unique prefix) or 'latest' (default: the running run, else "
                                          "the latest)")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("gate", help="approve or reject a pending manual gate, or override a failed one (approve with "
                                    "--note, then resume)")
    p.add_argument("run")
    p.add_argument("stage")
    p.add_argument("decision", choices=tuple(Decision))
    p.add_argument("--note", help="why (kept with the decision)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("stop", help="stop a running run (the worker is terminated, checkpoints are kept)")
    p.add_argument("run", nargs="?", help="run id (or unique prefix) or 'latest' (default: the running run)")
    p.set_defaults(func=cmd_stop)

    from cli.chat_repl import add_chat_commands
    from cli.serve import add_serve_command
    add_chat_commands(sub)
    add_serve_command(sub)
    return parser


class _Subcommands:
    """add_parser that gives every subcommand the shared options (--runs-dir anywhere on the line)."""

    def __init__(self, subparsers, common: argparse.ArgumentParser):
        self._subparsers, self._common = subparsers, common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, parents=[self._common], **kwargs)


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted path (repeatable; a stage by name or index), "
                        "e.g. --set stages.sft.train.steps=50 --set seed=1")


def _gate_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gate-policy", choices=GATE_POLICIES, default="rules",
                   help="how --batch decides manual gates: rules (pass iff rules pass), approve, reject")


def _interactive() -> bool:
    """A person is at a terminal, or at a browser page that textual-serve drives (its driver is the terminal)."""
    return (sys.stdin.isatty() and sys.stdout.isatty()) or "TEXTUAL_DRIVER" in os.environ


def cmd_run(args) -> int:
    from core.launch import new_run
    paths = new_run(args.config, runs_dir(args.runs_dir), args.overrides)
    print(f"run {paths.id} created in {paths.root}", flush=True)
    return _drive(paths, args)


def cmd_check(args) -> int:
    from cli.tables import plan_table
    from core.config_load import load_curriculum
    cur = load_curriculum(args.config, args.overrides, launches=True)
    plan_table(cur)
    steps = sum(s.train.steps for s in cur.stages if KINDS[s.kind].trains)
    print(f"{args.config}: ok ({len(cur.stages)} stages, {steps:,} optimizer steps)")
    return 0


def cmd_resume(args) -> int:
    from core.status import supervisor_alive
    from core.store import RunStore
    paths = find_run(runs_dir(args.runs_dir), args.run)
    with RunStore(paths.db) as store:
        meta = store.meta()
    if supervisor_alive(meta):
        raise UserError(f"run {paths.id} is still running (supervisor pid {meta.get('supervisor_pid')})")
    if meta.get("status") == RunStatus.COMPLETED:
        raise UserError(f"run {paths.id} already completed; nothing to resume")
    print(f"resuming run {paths.id}", flush=True)
    return _drive(paths, args)


def _drive(paths, args) -> int:
    """Batch in the foreground, or a detached supervisor plus the TUI when there is a terminal."""
    if args.batch or not _interactive():
        if not args.batch:
            print("no terminal: running in batch mode (gate policy: %s)" % args.gate_policy, flush=True)
        from cli.batch import run_batch
        return run_batch(paths, args.gate_policy)
    from core.supervisor import start_detached
    pid = start_detached(paths)
    print(f"supervisor started (pid {pid}); it keeps running if you quit", flush=True)
    return _open_tui(runs_dir(args.runs_dir), paths)


def _open_tui(directory: Path, paths=None) -> int:
    """The cockpit; on quit, 4 when the attached run goes on without it (detached), else 0."""
    from core.status import supervisor_alive
    from core.store import RunStore
    from tui.app import run_app
    attached = run_app(directory, paths)
    if attached is None:
        return 0
    with RunStore(attached.db) as store:
        live = supervisor_alive(store.meta())
    if not live:
        return 0
    print(f"Detached from {attached.id}; training keeps running. Attach again: cockpit attach {attached.id}")
    return EXIT_DETACHED


def cmd_attach(args) -> int:
    paths = _named_or_running(args, fallback="latest")
    return _open_tui(runs_dir(args.runs_dir), paths)


def _named_or_running(args, fallback: str | None = None):
    """The run the command names; without one, the run that is running (several: name one), else
    `fallback` ('latest'), else an error."""
    from core.status import running_runs
    directory = runs_dir(args.runs_dir)
    if args.run:
        return find_run(directory, args.run)
    running = running_runs(directory)
    if len(running) == 1:
        return running[0]
    if running:
        raise UserError(f"{len(running)} runs are running ({', '.join(r.id for r in running)}); name one")
    if fallback:
        return find_run(directory, fallback)
    raise UserError(f"no run is running in {directory}")


def cmd_runs(args) -> int:
    from core.status import summarize
    rows = [summarize(p) for p in list_runs(runs_dir(args.runs_dir))]
    if args.json:
        print(json.dumps([{k: r[k] for k in ("id", "name", "status", "created_at", "final_accuracy")} | {
            "stage": _current_stage(r)} for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no runs in {runs_dir(args.runs_dir)} (start one with `cockpit run`)")
        return 0
    from cli.tables import runs_table
    runs_table(rows)
    return 0


def _current_stage(summary: dict) -> str | None:
    stages = summary["stages"]
    active = [s for s in stages if s["status"] != StageStatus.WAITING and s["status"] not in STAGE_OK]
    started = [s for s in stages if s["status"] != StageStatus.WAITING]
    return (active or started or stages)[0 if active else -1]["name"]


def cmd_show(args) -> int:
    from core.status import summarize
    summary = summarize(find_run(runs_dir(args.runs_dir), args.run))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from cli.tables import run_report
    run_report(summary)
    return 0


def cmd_rollouts(args) -> int:
    from core.store import RunStore
    paths = find_run(runs_dir(args.runs_dir), args.run)
    with RunStore(paths.db) as store:
        events = store.events(kinds=[EventKind.ROLLOUT], stage=args.stage)
        if not events:
            _known_stage(store, paths.id, args.stage)
            raise UserError(f"stage {args.stage!r} of run {paths.id} has stored no rollouts (grpo stages do, "
                            "while they train)")
    steps = sorted({ev.step for ev in events})
    if args.step is not None and args.step not in steps:
        raise UserError(f"no rollouts at step {args.step}; stored steps: {', '.join(map(str, steps))}")
    chosen = steps if args.all else [steps[-1] if args.step is None else args.step]
    shown = [{"step": ev.step, **ev.data} for ev in events if ev.step in chosen]
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    from cli.tables import rollouts_report
    rollouts_report(shown, steps)
    return 0


def _known_stage(store, run_id: str, stage: str) -> dict:
    """The stage's row, or a UserError listing the run's stages."""
    try:
        return store.stage(stage)
    except KeyError:
        names = ", ".join(s["name"] for s in store.stages())
        raise UserError(f"run {run_id} has no stage {stage!r} (stages: {names})") from None


def cmd_gate(args) -> int:
    from core.store import RunStore
    paths = find_run(runs_dir(args.runs_dir), args.run)
    with RunStore(paths.db) as store:
        row = _known_stage(store, paths.id, args.stage)
        overriding = row["status"] in GATE_STOPPED
        if overriding:
            _check_override(args, row["status"])
        elif row["status"] != StageStatus.GATE_PENDING:
            raise UserError(f"stage {args.stage!r} has no pending gate (status: {row['status']})")
        store.decide(args.stage, args.decision, by=f"cli:{_user()}", note=args.note)
    if overriding:
        print(f"{args.stage}: override recorded for run {paths.id}; `cockpit resume {paths.id}` goes on from "
              "its output")
    else:
        print(f"{args.stage}: {args.decision} recorded for run {paths.id}")
    return 0


def _check_override(args, status: str) -> None:
    """Overriding a failed or rejected gate: only an approval, and only with the reason in --note."""
    if args.decision != Decision.APPROVE:
        raise UserError(f"stage {args.stage!r} already stopped the run ({status}); only approve overrides it")
    if not args.note:
        raise UserError(f"overriding the {status} gate of {args.stage!r} needs --note saying why (it stays in the "
                        "audit trail)")


def cmd_stop(args) -> int:
    from core.status import supervisor_alive
    from core.store import RunStore
    paths = _named_or_running(args)
    with RunStore(paths.db) as store:
        if not supervisor_alive(store.meta()):
            raise UserError(f"run {paths.id} is not running")
        store.command("stop", by=f"cli:{_user()}")
    print(f"stop requested for run {paths.id}; the supervisor stops the worker within a few seconds")
    return 0


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if _interactive():
            return _open_tui(runs_dir(args.runs_dir))
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UserError as exc:
        print(f"cockpit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cockpit show latest | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
