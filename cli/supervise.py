"""Run one run's supervisor in this process: `python -m cli.supervise RUN_DIR [--gate-policy P]`.

`cockpit run` starts it detached (core.supervisor.start_detached), so it outlives any terminal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.events import GATE_POLICIES, RunStatus
from core.run_lock import RunBusy, RunLock
from core.runs import RunPaths
from core.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--gate-policy", choices=GATE_POLICIES)
    parser.add_argument("--lock-fd", type=int, help="the run's lock, taken by the launcher (default: take it here)")
    args = parser.parse_args(argv)
    lock = RunLock.inherited(args.lock_fd, args.run_dir) if args.lock_fd is not None else None
    try:
        status = Supervisor(RunPaths(args.run_dir), args.gate_policy, lock).run()
    except RunBusy as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if status == RunStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
