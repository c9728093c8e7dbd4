"""The fork server: one interpreter with every worker's imports done, which forks each stage's worker.

    python -m workers.fork_server RUN_DIR     (started by core.forked_worker.ForkServer)

A cold worker spends about 5 s of CPU importing torch, transformers, trl, peft and datasets; a fork of this
process starts training in a fraction of a second, without taking CPU from a stage that trains meanwhile.
It preloads every kind (workers.warm.preload), then reads requests from stdin, one JSON line each:
`{"kind", "spec", "log", "env"}`. For each it forks a child that starts its own session, takes `env` as its
environment, moves its output to `log` and runs the kind's worker module exactly as
`python -m workers.stages.<kind> SPEC` would; it answers `{"pid": PID}` on stdout, and `{"exit": PID,
"code": CODE}` (a Popen-style return code) when that child ends. At EOF on stdin (the supervisor ended
or died) it exits; its children run on in their own sessions. Only CPU machines use it: a library that
touches CUDA while imported would leave the forked children unable to use the GPU.
"""
from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import sys
import traceback

from core.kinds import KINDS
from core.worker_proc import STACKS_SIGNAL
from workers.warm import preload, redirect, run_worker_module


def run_child(request: dict) -> None:
    """In the forked child: become the stage's worker; never returns into the server's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        redirect(request["log"])
        run_worker_module(request["kind"], request["spec"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (before the worker's own handling: its module failed to run)
        traceback.print_exc()
    finally:
        os._exit(code)  # the worker module leaves through workers.common.leave; this only covers a stray return


def fork_child(request: dict, server_fds: tuple[int, ...]) -> int:
    """Fork the child for `request`; return its pid once it leads its own session (so that killing its
    group, the moment the supervisor knows the pid, reaches it)."""
    settled_r, settled_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (*server_fds, settled_r):
            os.close(fd)
        os.setsid()
        os.close(settled_w)
        run_child(request)
    os.close(settled_w)
    os.read(settled_r, 1)  # EOF: the child closed its end after setsid (or died)
    os.close(settled_r)
    return pid


def reply(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def reap(replies: int) -> None:
    """Report every child that ended since the last call."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply(replies, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(replies: int) -> None:
    """Fork a worker per request line until stdin closes; report each child's end as it comes (on `replies`,
    the pipe that was stdout: what the imports print went to the log, never into the answers)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes select through the fd
    pending = b""
    while True:
        readable, _, _ = select.select([0, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            reap(replies)
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                reply(replies, {"pid": fork_child(json.loads(line), (wake_r, wake_w, replies))})


def main(argv: list[str]) -> int:
    """Preload every kind, say so, then serve (argv[1], the run folder, only names whose server this is)."""
    faulthandler.register(STACKS_SIGNAL, all_threads=True)  # its own stack on it, as a worker's (not death)
    replies = os.dup(1)
    os.dup2(2, 1)
    for kind in KINDS:
        preload(kind)
    print(f"[info] fork server for {argv[1] if len(argv) > 1 else '?'} ready (pid {os.getpid()})",
          file=sys.stderr, flush=True)
    serve(replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
