"""The supervisor: runs a curriculum's stages as worker subprocesses and records everything.

It is the only writer of stage state. Started detached (own session, output to a file) by
`start_detached`, or in the foreground by `cockpit run --batch`. Run it by hand as
`python -m cli.supervise RUN_DIR [--gate-policy rules|approve|reject]`.

A CPU machine forks each local single-process worker from the run's fork server (core/forked_worker.py); else
the next stage's interpreter is prestarted while a stage runs (`WarmWorker`). With `parallel: N`, up to N ready
stages run at once, each in a thread with its own store connection and machine share (core/device_pool.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterator

from core.checkpoints import checkpoint_step, resume_checkpoint
from core.config import Curriculum, StageSpec
from core.dag import BASE, Holds
from core.device_pool import Allotment, DevicePool, visible_gpus
from core.forked_worker import ForkedWorker, ForkServer, fork_server_enabled
from core.events import (GATE_STOPPED, JOB_QUEUED, RULES, RUN_ENDING_STAGE, STAGE_OK, Decision, EventKind,
                         RunStatus, StageStatus, approves, gate_outcome)
from core.gates import evaluate_gate, policy_decision
from core.hardware import HardwareSampler
from core.run_lock import RunLock
from core.runs import RunPaths
from core.store import RunStore
from core.worker_proc import (WarmWorker, WorkerProcess, dump_stacks, exit_reason, pinned_threads, prestart_enabled,
                              worker_env)
from core import skypilot_job, slurm_job
from core.skypilot_job import SkyPilotWorker
from core.slurm_job import EXIT_REQUEUE, SlurmWorker, SubmitError
from core.worker_spec import ExpertInput, WorkerSpec

Worker = WorkerProcess | ForkedWorker | SlurmWorker | SkyPilotWorker  # what the launch step returns

EXIT_OOM = 75
HEARTBEAT_S = 2.0
POLL_S = 1.0
PRESTART_AHEAD = 2  # stages whose interpreters wait prestarted (each holds its imports: ~0.45 GB of RAM)


class StopRequested(Exception):
    """An operator asked the run to stop (command in the store, or a signal)."""


class Supervisor:
    """Runs the stages of one run directory in order, from wherever the run stands."""

    def __init__(self, paths: RunPaths, gate_policy: str | None = None, lock: RunLock | None = None):
        self.paths = paths
        self.lock = lock  # taken in run() unless a launcher passed its own down
        self._local = threading.local()  # each stage thread's store connection, sampler and allotment
        self._local.store, self._local.hardware = RunStore(paths.db), HardwareSampler()
        self.cur = Curriculum.model_validate(self.store.get_meta("config"))
        self.gate_policy = gate_policy
        self._last_heartbeat = 0.0
        self._stop = False
        self._warm: dict[str, WarmWorker] = {}  # stage name -> its prestarted interpreter
        self._forks = ForkServer(paths.root, paths.root / "fork_server.log") \
            if fork_server_enabled(self.hardware.has_gpu) else None  # its process starts with the first fork
        self._workers: dict[str, dict | None] = {}  # stage -> its worker's process group or job (meta `workers`)
        self._workers_lock = threading.Lock()

    @property
    def store(self) -> RunStore:
        """This thread's connection to the run store."""
        return self._local.store

    @property
    def hardware(self) -> HardwareSampler:
        return self._local.hardware

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> str:
        """Run every unfinished stage; returns the run's final status. RunBusy (nothing touched) when
        another supervisor holds the run."""
        self.lock = self.lock or RunLock.acquire(self.paths.root)
        self._install_signal_handlers()
        self._reap_orphaned_workers()
        self.store.set_meta(status=RunStatus.RUNNING, supervisor_pid=os.getpid(), heartbeat=time.time())
        status = RunStatus.COMPLETED
        holds = Holds()
        try:
            # closed before the run is recorded as ended: stages still running beside a stopped one end first
            with closing(self._side_by_side(holds) if self.cur.parallel > 1 else self._in_order(holds)) as outcomes:
                for outcome in outcomes:
                    if outcome == StageStatus.STOPPED:
                        status = RunStatus.STOPPED
                        break
                    if outcome not in STAGE_OK | {StageStatus.SKIPPED} and status == RunStatus.COMPLETED:
                        status = RunStatus(outcome) if outcome in RUN_ENDING_STAGE else RunStatus.FAILED
        except StopRequested:
            status = RunStatus.STOPPED
        except BaseException as exc:
            status = RunStatus.FAILED
            self.store.append(EventKind.LOG, now=True, level="error", message=f"supervisor error: {exc!r}")
            raise
        finally:
            self._drop_warm()
            self.store.append(EventKind.RUN_FINISHED, status=status, now=True)
            self.store.set_meta(status=status, finished_at=time.time())
            self.store.close()
            self.lock.release()
        return status

    def _in_order(self, holds: Holds) -> Iterator[str]:
        for stage in self.cur.stages:
            yield self._advance(stage, holds)

    def _side_by_side(self, holds: Holds) -> Iterator[str]:
        """Up to `parallel` stages at once, in curriculum order as their inputs are ready and the machine has
        room (GPUs of their own); yields each outcome as its stage ends."""
        pool = DevicePool(visible_gpus(self.hardware.gpu_count), pinned_threads(None), self.cur.parallel)
        waiting, running, done = list(self.cur.stages), {}, set()
        with ThreadPoolExecutor(self.cur.parallel, thread_name_prefix="stage") as threads:
            while waiting or running:
                for stage in [s for s in waiting if self._waits_for(s) <= done]:
                    if len(running) >= self.cur.parallel or self._stop:
                        break
                    if (allotment := pool.take(stage)) is not None:
                        waiting.remove(stage)
                        running[threads.submit(self._advance_on, stage, holds, allotment)] = stage, allotment
                if self._stop and not running:
                    raise StopRequested()
                ended, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in ended:
                    stage, allotment = running.pop(future)
                    pool.give_back(allotment)
                    done.add(stage.name)
                    yield future.result()

    def _waits_for(self, stage: StageSpec) -> set[str]:
        """The stages that must end before `stage` starts beside others: what it reads, what its gate compares
        it with, and the evaluation stages that gate what it reads."""
        needs = set(stage.needs()) - {BASE}
        compared = {n for rule in (stage.gate.require.values() if stage.gate else ())
                    for key in ("min_of", "max_of") for n in rule.references(key)}
        upto = self.cur.index(stage.name)
        gating = {s.name for s in self.cur.stages[:upto] if s.kind == "eval" and s.from_ in needs}
        return needs | compared | gating

    def _advance_on(self, stage: StageSpec, holds: Holds, allotment: Allotment) -> str:
        """`_advance` in a stage thread: its own store connection and sampler, the machine share it was given."""
        self._local.store, self._local.hardware = RunStore(self.paths.db), HardwareSampler()
        self._local.allotment = allotment
        try:
            return self._advance(stage, holds)
        finally:
            self.store.close()

    def _advance(self, stage: StageSpec, holds: Holds) -> str:
        """Bring one stage as far as it goes: skipped while a stage it needs did not pass, else trained and
        gated (or only gated, or left as it is when it passed before); other branches go on after a failure."""
        before = self.store.stage(stage.name)["status"]
        if before in STAGE_OK or (before in GATE_STOPPED and self._overridden(stage)):
            return StageStatus.COMPLETED
        if (why := holds.held(stage)) is not None:
            return self._finish(stage, StageStatus.SKIPPED, f"held back: {why}", 0)
        if before == StageStatus.GATE_PENDING and stage.gate and self.paths.stage_final(stage.name).exists():
            outcome = self._gate(stage)  # trained before the supervisor died; only the gate is left
        else:
            outcome = self.run_stage(stage)
        if outcome not in STAGE_OK:
            holds.ended_badly(stage, outcome)
        return outcome

    def run_stage(self, stage: StageSpec) -> str:
        """Train (retrying an OOM with half the batch), then evaluate the gate; returns the final status."""
        overrides: dict = {}
        retries = requeues = 0
        resume = self._resume_point(stage)
        while True:
            code, reason = self._run_worker(stage, overrides, resume)
            if code == 0:
                return self._finish_trained_stage(stage)
            if self._stop:
                return self._finish(stage, StageStatus.STOPPED, "stopped by operator", code)
            if code == EXIT_REQUEUE and requeues < stage.launch.slurm.requeues:
                requeues += 1
                self.store.append(EventKind.LOG, stage=stage.name, now=True, level="warning",
                                  message=f"{reason}; submitting it again ({requeues}/{stage.launch.slurm.requeues})")
                resume = self._resume_point(stage)
                continue
            if code != EXIT_OOM or retries >= self.cur.max_oom_retries or not self._can_halve(stage, overrides):
                if code == EXIT_OOM:
                    reason = f"out of memory after {retries} retries; {reason}"
                return self._finish(stage, StageStatus.FAILED, reason, code)
            retries += 1
            overrides = self._halved(stage, overrides)
            resume = self._resume_point(stage)

    def _finish_trained_stage(self, stage: StageSpec) -> str:
        final = self.paths.stage_final(stage.name)
        kept = str(final) if final.exists() else None
        if stage.launch.via == "skypilot":  # the job's final model stays in its bucket
            kept = skypilot_job.bucket_path(stage, self.paths.root.name, f"stages/{stage.name}/final")
        self.store.update_stage(stage.name, checkpoint=kept)
        if stage.gate is None:
            return self._finish(stage, StageStatus.COMPLETED, None, 0)
        return self._gate(stage)

    # -- one worker ---------------------------------------------------------------------------
    def _run_worker(self, stage: StageSpec, overrides: dict, resume: Path | None) -> tuple[int, str | None]:
        row = self.store.stage(stage.name)
        attempt = row["attempt"] + 1
        spec_path = self._write_spec(stage, attempt, overrides, resume)
        self.store.update_stage(stage.name, status=StageStatus.RUNNING, attempt=attempt, started_at=time.time(),
                                finished_at=None, reason=None)
        log, failure = self.paths.stage_log(stage.name), self.paths.stage_failure(stage.name)
        failure.unlink(missing_ok=True)  # an earlier attempt's
        proc = self._take_warm(stage, spec_path, log)
        how = "warm" if proc else "cold"
        try:
            proc = proc or self._start(stage, spec_path, log)
        except SubmitError as exc:
            return 1, str(exc)
        how = "forked" if isinstance(proc, ForkedWorker) else how
        job = isinstance(proc, (SlurmWorker, SkyPilotWorker))
        self._record_worker(stage.name, {"pgid": proc.pid, "job": proc.ref() if job else None})
        self.store.append(EventKind.LOG, stage=stage.name, now=True, level="info",
                          message=f"worker started ({proc.describe()}, attempt {attempt}, {how} start)")
        self._prestart_next(stage, spare_cpu=how == "cold")
        code = self._watch(stage, proc)
        self._record_worker(stage.name, None)
        if job:
            self.store.update_stage(stage.name, reason=None)  # the queued note, if the job never ran
        return code, (proc.reason if job else None) or exit_reason(code, log, failure)

    def _record_worker(self, stage: str, worker: dict | None) -> None:
        """Note (None: forget) a stage's running worker in the run's meta (what a later supervisor reaps)."""
        with self._workers_lock:
            self._workers[stage] = worker
            self.store.set_meta(workers=[{"stage": s, **w} for s, w in self._workers.items() if w])

    def _start(self, stage: StageSpec, spec: Path, log: Path) -> Worker:
        """The launch step: a local worker (forked, or torchrun for train.nproc > 1), a Slurm job or a SkyPilot
        job; beside other stages, on the GPUs and cores allotted to it."""
        allotment = getattr(self._local, "allotment", None) or Allotment()
        threads = allotment.threads or pinned_threads(stage.train.threads, stage.train.nproc)
        if stage.launch.via == "slurm":
            return SlurmWorker.submit(stage.kind, spec, log, stage.train.nproc, threads, stage.launch.slurm, stage.name)
        if stage.launch.via == "skypilot":
            return SkyPilotWorker.submit(stage, spec, log, self.store, self.paths.root.name)
        forked = self._forks.spawn(stage.kind, spec, log, threads, allotment.gpus) \
            if self._forks and stage.train.nproc == 1 else None
        return forked or WorkerProcess.start(stage.kind, spec, log, stage.train.nproc, threads, allotment.gpus)

    # -- prestarted interpreters ----------------------------------------------------------------
    def _take_warm(self, stage: StageSpec, spec: Path, log: Path) -> WorkerProcess | None:
        """The interpreter prestarted for this stage, handed its spec; None means start cold (OOM retries, the
        first stage and the first stage of a resume: only a first attempt finds one)."""
        warm = self._warm.pop(stage.name, None)
        return warm.handoff(spec, log) if warm else None

    def _prestart_next(self, stage: StageSpec, spare_cpu: bool) -> None:
        """Prestart the interpreters of the next PRESTART_AHEAD local stages (not with a fork server, nor side by
        side) where their imports take only CPU this worker leaves idle: it imports too (cold start), evaluates
        after its final save (`spare_cpu`), trains on a GPU, or leaves cores free. Importing beside a worker
        that trains on every core cost it as much as the next stage gained; two ahead, so a stage that exits
        right after its final save still finds its successor warm. torchrun stages start cold."""
        if self.cur.parallel > 1 or self._forks:
            return
        upto = self.cur.index(stage.name)
        ahead = [s for s in self.cur.stages[upto + 1:upto + 1 + PRESTART_AHEAD]
                 if s.launch.via == "local" and s.train.nproc == 1]
        for name in set(self._warm) - {s.name for s in ahead}:
            self._warm.pop(name).terminate()
        threads = pinned_threads(stage.train.threads, stage.train.nproc) * stage.train.nproc
        idle_cpu = spare_cpu or self.hardware.has_gpu or threads < len(os.sched_getaffinity(0))
        if not (idle_cpu and prestart_enabled()):
            return
        for nxt in ahead:
            if nxt.name not in self._warm:
                self._warm[nxt.name] = WarmWorker.start(nxt.name, nxt.kind,
                                                        self.paths.stage_dir(nxt.name) / "prestart.log")

    def _drop_warm(self) -> None:
        """Terminate the waiting prestarted interpreters and the fork server (the run stops, fails or ends)."""
        while self._warm:
            self._warm.popitem()[1].terminate()
        if self._forks:
            self._forks.close()

    def _watch(self, stage: StageSpec, proc: Worker) -> int:
        """Wait for the worker while sampling hardware, heartbeating and reading commands."""
        last_step, last_progress, stalled, job_seen = None, time.monotonic(), False, (None, None)
        final, since = self.paths.stage_final(stage.name), time.time()
        while (code := self._wait_watching_final(stage, proc, final, since)) is None:
            if proc.pid is None:  # a job's processes are on another machine: nothing here to sample
                job_seen = self._follow_job(stage, proc, job_seen)
            else:
                self.store.append(EventKind.HARDWARE, stage=stage.name, **self.hardware.sample(proc.pid))
            self._heartbeat()
            if self._stop_requested():
                proc.terminate()
                continue
            step = self.store.last_step(stage.name)
            if step != last_step:
                last_step, last_progress, stalled = step, time.monotonic(), False
            elif not stalled and time.monotonic() - last_progress > self.cur.stall_timeout_s:
                stalled = True
                self.store.append(EventKind.STALLED, stage=stage.name, step=step, now=True,
                                  seconds=round(time.monotonic() - last_progress))
                if proc.pid is not None and step is not None and dump_stacks(proc.pid):  # past its first step
                    self.store.append(EventKind.LOG, stage=stage.name, now=True, level="warning",
                                      message="the stack of every worker thread is in the stage's worker.log")
        self.store.flush()
        return code

    def _wait_watching_final(self, stage: StageSpec, proc: Worker, final: Path,
                             since: float) -> int | None:
        """`proc.wait(POLL_S)` in quarter slices; as soon as this attempt's final model is written (training is
        over, the worker evaluates and leaves CPU idle) the next stages' interpreters are prestarted."""
        prestarted = False
        for _ in range(4):
            if (code := proc.wait(POLL_S / 4)) is not None:
                return code
            if not prestarted and _written_since(final, since):
                self._prestart_next(stage, spare_cpu=True)
                prestarted = True
        return None

    def _follow_job(self, stage: StageSpec, job: SlurmWorker | SkyPilotWorker, seen: tuple) -> tuple:
        """Record a job's state when it changes (queued, running, ...) with the time since submission; while
        it is queued, the stage's reason says so with the minutes waited (`cockpit show`). `seen`: the last
        recorded state and note."""
        state, note = seen
        waited = time.time() - job.submitted
        if job.state not in (state, "UNKNOWN", "COMPLETING"):
            state = job.state
            self.store.append(EventKind.JOB_STATE, stage=stage.name, now=True, job=job.describe(), state=state,
                              waited_s=round(waited, 1))
        queued = f"queued on {job.describe()} for {int(waited // 60)} min" if state in JOB_QUEUED else None
        if queued != note:
            self.store.update_stage(stage.name, reason=queued)
        return state, queued

    def _write_spec(self, stage: StageSpec, attempt: int, overrides: dict, resume: Path | None) -> Path:
        parent = self.paths.stage_final(stage.from_) if stage.from_ not in (None, BASE) else None
        teacher = stage.distill.teacher if stage.distill else None  # a stage, base, or a model folder (absolute)
        if teacher in [s.name for s in self.cur.stages]:
            teacher = str(self.paths.stage_final(teacher).resolve())
        spec = WorkerSpec(
            run_dir=str(self.paths.root.resolve()), db=str(self.paths.db.resolve()), stage=stage,
            model=self.cur.model, sandbox=self.cur.sandbox, attempt=attempt,
            input_model=str(parent.resolve()) if parent else None,
            teacher_model=None if teacher == BASE else teacher,
            experts=[ExpertInput(name=e, path=str(self.paths.stage_final(e).resolve()), data=self.cur.stage(e).data)
                     for e in (stage.route.experts if stage.route else [])],
            output_dir=str(self.paths.stage_dir(stage.name).resolve()),
            resume_from=str(resume) if resume else None, train_overrides=overrides)
        return spec.write(self.paths.stage_spec(stage.name))

    # -- resume and OOM -----------------------------------------------------------------------
    def _reap_orphaned_workers(self) -> None:
        """Workers left by a dead supervisor keep training; stop them before resuming their stages."""
        for worker in self.store.get_meta("workers") or []:
            pgid, job = worker["pgid"], worker["job"]
            if pgid and WorkerProcess.group_alive(pgid):
                self.store.append(EventKind.LOG, now=True, level="warning",
                                  message=f"stopping worker group {pgid} left by a dead supervisor")
                WorkerProcess.terminate_group(pgid)
            cancel = skypilot_job.cancel_left_job if job and job["cluster"] == "skypilot" else slurm_job.cancel_left_job
            if job and cancel(job):
                self.store.append(EventKind.LOG, now=True, level="warning",
                                  message=f"cancelled {job['cluster']} job {job['job_id']} left by a dead supervisor")
        self.store.set_meta(workers=[])

    def _resume_point(self, stage: StageSpec) -> Path | None:
        """The newest checkpoint of a stage that verifies (newer broken ones are reported skipped); its later
        metrics are superseded."""
        ckpt, skipped = resume_checkpoint(self.paths.stage_checkpoints(stage.name))
        for path, reason in skipped:
            self.store.append(EventKind.CHECKPOINT_SKIPPED, stage=stage.name, step=checkpoint_step(path), now=True,
                              path=str(path), reason=reason)
        if ckpt is None:
            if self.store.last_step(stage.name) is not None:
                self.store.supersede_after(stage.name, 0)
                self.store.append(EventKind.RESUMED, stage=stage.name, step=0, now=True, from_checkpoint=None)
            return None
        step = checkpoint_step(ckpt)
        self.store.supersede_after(stage.name, step)
        self.store.append(EventKind.RESUMED, stage=stage.name, step=step, now=True, from_checkpoint=str(ckpt))
        return ckpt

    def _can_halve(self, stage: StageSpec, overrides: dict) -> bool:
        return overrides.get("batch_size", stage.train.batch_size) > 1

    def _halved(self, stage: StageSpec, overrides: dict) -> dict:
        batch = overrides.get("batch_size", stage.train.batch_size) // 2
        accum = overrides.get("grad_accum", stage.train.grad_accum) * 2
        attempt = self.store.stage(stage.name)["attempt"] + 1
        self.store.append(EventKind.OOM_RETRY, stage=stage.name, now=True, batch_size=batch, grad_accum=accum,
                          attempt=attempt)
        return {"batch_size": batch, "grad_accum": accum}

    # -- gates --------------------------------------------------------------------------------
    def _gate(self, stage: StageSpec) -> str:
        report = evaluate_gate(stage.gate, stage.name, self._metrics_so_far(stage))
        self.store.update_stage(stage.name, status=StageStatus.GATE_PENDING)
        pending_ts = time.time()
        pending = report.pending_data()
        self.store.append(EventKind.GATE_PENDING, stage=stage.name, now=True, **pending)
        if stage.gate.approval == "auto":
            decision, by, note = report.decision, RULES, None
        elif self.gate_policy:
            decision, by, note = policy_decision(report, self.gate_policy), f"policy:{self.gate_policy}", None
            self.store.decide(stage.name, decision, by, note)
        else:
            decision, by, note = self._wait_for_decision(stage.name, pending_ts)
        seen = {r.metric: r.value for r in report.rules}
        self.store.append(EventKind.GATE_DECIDED, stage=stage.name, now=True, decision=decision, by=by, note=note,
                          metrics=seen, rules=pending["rules"])
        status = gate_outcome(decision, by)
        return self._finish(stage, status, None if status == StageStatus.PASSED else f"gate {decision} by {by}", 0)

    def _overridden(self, stage: StageSpec) -> bool:
        """An operator approved this stage after its gate failed or was rejected (`cockpit gate … approve
        --note`): record the override and go on with the trained output."""
        row, found = self.store.stage(stage.name), self.store.decision(stage.name)
        if not (found and approves(found["decision"]) and found["ts"] > (row["finished_at"] or 0)
                and self.paths.stage_final(stage.name).exists()):
            return False
        self.store.append(EventKind.GATE_DECIDED, stage=stage.name, now=True, decision=Decision.APPROVE,
                          by=found["by"], note=found["note"], metrics={}, rules=[], override=True)
        self._finish(stage, StageStatus.PASSED, None, 0)
        return True

    def _wait_for_decision(self, stage: str, since: float) -> tuple[str, str, str | None]:
        while True:
            found = self.store.decision(stage)
            if found and found["ts"] >= since:
                return found["decision"], found["by"], found["note"]
            self._heartbeat()
            if self._stop_requested():
                raise StopRequested()
            time.sleep(POLL_S / 2)

    def _metrics_so_far(self, stage: StageSpec) -> dict[str, dict[str, float]]:
        upto = self.cur.index(stage.name)
        return {s.name: self.store.final_metrics(s.name) for s in self.cur.stages[: upto + 1]}

    # -- bookkeeping --------------------------------------------------------------------------
    def _finish(self, stage: StageSpec, status: str, reason: str | None, code: int) -> str:
        self.store.update_stage(stage.name, status=status, finished_at=time.time(), reason=reason)
        self.store.append(EventKind.STAGE_FINISHED, stage=stage.name, now=True, status=status, reason=reason,
                          exit_code=code)
        return status

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_S:
            self._last_heartbeat = time.monotonic()
            self.store.set_meta(heartbeat=time.time())

    def _stop_requested(self) -> bool:
        if "stop" in self.store.take_commands():
            self._stop = True
            self.store.append(EventKind.LOG, now=True, level="warning", message="stop requested")
        return self._stop

    def _install_signal_handlers(self) -> None:
        def on_signal(signum, _frame):
            self._stop = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def start_detached(paths: RunPaths, gate_policy: str | None = None) -> int:
    """Start a supervisor for `paths` in its own session (survives the terminal); returns its pid.
    The run's lock is taken here (RunBusy if another supervisor holds it) and handed to the child."""
    lock = RunLock.acquire(paths.root)
    cmd = [sys.executable, "-m", "cli.supervise", str(paths.root), "--lock-fd", str(lock.fd)]
    if gate_policy:
        cmd += ["--gate-policy", gate_policy]
    try:
        with open(paths.supervisor_log, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, pass_fds=(lock.fd,), env=worker_env())
        lock.set_holder(proc.pid)
    finally:
        lock.release()  # the child's copy keeps the lock held
    return proc.pid


def _written_since(path: Path, since: float) -> bool:
    """`path` exists and was (re)written at or after `since` (a stage's final model, this attempt's)."""
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False
