"""A stage's worker as a Slurm job, submitted and watched through submitit.

The supervisor stays the owner of the run: it submits the job, polls its state (a pending job is
reported as queued, with the time waited), reads the worker's events from the run store as for a
local worker, and cancels the job on `cockpit stop`. The run directory must therefore be on a
filesystem the cluster's nodes share (the store, the spec, the checkpoints and the log live there).
A job that is preempted, times out or loses its node comes back as EXIT_REQUEUE: the supervisor
submits it again, resuming from the stage's last complete checkpoint.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from core.config import SlurmSpec
from core.events import JOB_LIVE
from core.kinds import KINDS
from core.worker_proc import EXCEPTION_LINE, worker_command, worker_env

EXIT_REQUEUE = 76  # the job ended under its worker (preempted, time limit, node lost, killed): submit it again
REQUEUE_STATES = frozenset({"PREEMPTED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "INTERRUPTED"})  # INTERRUPTED: local
STATE_POLL_S = {"slurm": 30.0, "local": 0.0}  # sacct at most this often; the local stand-in polls its process
RESULT_GRACE_S = {"slurm": 15.0, "local": 0.0}  # an ended job's result file may reach this host late (NFS)
RDZV_PORT = 29511
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SubmitError(RuntimeError):
    """The job could not be submitted (no Slurm here, sbatch refused it, bad options); the stage fails with it."""


class SlurmWorker:
    """One submitted job; `wait`, `terminate` and `describe` as the supervisor uses a WorkerProcess."""

    pid = None  # the worker runs on another machine: no local process to sample

    def __init__(self, job, spec: SlurmSpec):
        self.job, self.spec = job, spec
        self.submitted, self.reason = time.time(), None
        self._state, self._next_poll, self._ended_at = "UNKNOWN", 0.0, None

    @classmethod
    def submit(cls, kind: str, spec_path: Path, log: Path, nproc: int, threads: int | None,
               slurm: SlurmSpec, stage: str) -> "SlurmWorker":
        """Submit the stage's worker as one job (one task per node) with its output appended to `log`."""
        import submitit

        try:
            executor = submitit.AutoExecutor(folder=log.parent / "slurm", cluster=slurm.cluster)
            executor.update_parameters(**job_parameters(slurm, stage, nproc))
            job = executor.submit(run_worker, kind, str(spec_path.resolve()), str(log.resolve()), nproc, threads,
                                  slurm.nodes)
        except (RuntimeError, ValueError, OSError) as exc:  # submitit's FailedJobError is a RuntimeError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SubmitError(f"could not submit the {slurm.cluster} job: {first}") from exc
        return cls(job, slurm)

    @property
    def state(self) -> str:
        """The scheduler's word for the job (PENDING, RUNNING, PREEMPTED, ...; the local stand-in: RUNNING,
        FINISHED, INTERRUPTED), asked for at most every STATE_POLL_S; UNKNOWN until the scheduler knows it."""
        if time.monotonic() >= self._next_poll:
            every = STATE_POLL_S[self.spec.cluster]
            self._next_poll = time.monotonic() + (min(every, 2.0) if self._state == "UNKNOWN" else every)  # fresh: soon
            info = self.job.get_info(mode="force")  # sacct on Slurm, the controller process on the stand-in
            self._state = (info.get("State") or info.get("jobState") or "UNKNOWN").split()[0]
        return self._state

    def describe(self) -> str:
        where = f" (partition {self.spec.partition})" if self.spec.partition and self.spec.cluster == "slurm" else ""
        return f"{self.spec.cluster} job {self.job.job_id}{where}"

    def ref(self) -> dict:
        """What cancels the job after this process is gone (`cancel_left_job`)."""
        return {"cluster": self.spec.cluster, "job_id": self.job.job_id, "folder": str(self.job.paths.folder)}

    def wait(self, timeout: float) -> int | None:
        """The worker's exit code (EXIT_REQUEUE when the job ended under it), or None while queued or running."""
        deadline = time.monotonic() + timeout
        while (code := self._outcome()) is None and time.monotonic() < deadline:
            time.sleep(min(0.2, timeout))
        return code

    def _outcome(self) -> int | None:
        """The exit code once the job has a result, or has ended without one (after RESULT_GRACE_S)."""
        if self.job.task(0).paths.result_pickle.exists():
            return self._result()
        if self.state in JOB_LIVE:
            return None
        self._ended_at = self._ended_at or time.monotonic()
        if time.monotonic() - self._ended_at < RESULT_GRACE_S[self.spec.cluster]:
            return None
        self.reason = f"{self.describe()} ended {self.state}"
        return EXIT_REQUEUE if self.state in REQUEUE_STATES else 1

    def _result(self) -> int:
        """What `run_worker` returned on the first node, or 1 with the exception it raised."""
        try:
            code = int(self.job.task(0).result())
        except Exception as exc:  # noqa: BLE001 - the job failed outside the worker; its trace is in slurm/
            last = next((line.strip() for line in reversed(str(exc).splitlines()) if EXCEPTION_LINE.match(line.strip())),
                        type(exc).__name__)
            self.reason = f"{self.describe()} failed: {last} (see {self.job.paths.folder.name}/)"
            return 1
        if code == EXIT_REQUEUE:
            self.reason = f"{self.describe()} was signalled to stop (time limit near, preempted or cancelled)"
        return code

    def terminate(self) -> None:
        """Cancel the job (scancel; the stand-in: SIGINT to its controller) and wait up to 30 s for it to end."""
        self.job.cancel(check=False)
        self._next_poll = 0.0
        deadline = time.monotonic() + 30
        while self.state in JOB_LIVE and time.monotonic() < deadline:
            time.sleep(2.0 if self.spec.cluster == "slurm" else 0.2)
            self._next_poll = 0.0


def cancel_left_job(ref: dict) -> bool:
    """Cancel a job a dead supervisor left (`SlurmWorker.ref`); False when it had already ended."""
    if ref["cluster"] == "local":  # the stand-in's job id is its controller's pid
        try:
            controller = psutil.Process(int(ref["job_id"]))
            if ref["folder"] not in controller.cmdline():
                return False
            controller.terminate()  # forwarded to the job's task, which stops the worker
        except psutil.Error:
            return False
        return True
    from submitit.slurm.slurm import SlurmJob

    job = SlurmJob(ref["folder"], ref["job_id"])
    if (job.get_info(mode="force").get("State") or "UNKNOWN").split()[0] not in JOB_LIVE:
        return False
    job.cancel(check=False)
    return True


def job_parameters(slurm: SlurmSpec, stage: str, nproc: int) -> dict:
    """submitit's parameters for one stage: one task per node, `nproc` worker processes in each."""
    params = {"timeout_min": slurm.time, "nodes": slurm.nodes, "tasks_per_node": 1, "name": f"cockpit-{stage}"}
    if slurm.cluster == "local":
        return params
    optional = {"slurm_partition": slurm.partition, "slurm_account": slurm.account, "slurm_qos": slurm.qos,
                "cpus_per_task": slurm.cpus_per_task, "mem_gb": slurm.mem_gb,
                "gpus_per_node": slurm.gpus_per_node or None}
    params |= {k: v for k, v in optional.items() if v is not None}
    params |= {"slurm_setup": slurm.setup} if slurm.setup else {}
    # The supervisor submits a preempted job again itself (from the newest checkpoint): Slurm must not requeue it
    return params | {"slurm_additional_parameters": {"no-requeue": True, **slurm.extra}}


def sbatch_script(slurm: SlurmSpec, stage: str, nproc: int, folder: Path) -> str:
    """The #SBATCH script submitit writes for this stage on a Slurm cluster (what `sbatch` is given)."""
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _make_sbatch_string

    rename = SlurmExecutor._equivalence_dict()
    params = {rename.get(k, k).removeprefix("slurm_"): v for k, v in
              job_parameters(slurm.model_copy(update={"cluster": "slurm"}), stage, nproc).items()}
    if "mem" in params:
        params["mem"] = _convert_mem(params["mem"])
    return _make_sbatch_string(command="python -u -m submitit.core._submit", folder=folder, **params)


def run_worker(kind: str, spec: str, log: str, nproc: int, threads: int | None, nodes: int) -> int:
    """In the job, on each node: the stage's worker (torchrun across the job's nodes when it has several), its
    output appended to the stage log; returns the worker's exit code, or EXIT_REQUEUE when the job was told
    to stop (SIGUSR2 before the time limit or a preemption, SIGTERM on scancel): the worker is stopped and
    the supervisor decides what comes next (submitit's own requeue never runs)."""
    command = worker_command(kind, Path(spec), nproc) if nodes == 1 else _torchrun_across_nodes(kind, spec, nproc)
    with open(log, "ab") as out:
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  env=worker_env(threads), preexec_fn=_die_with_parent)
    stopped = []

    def stop(signum, _frame):
        stopped.append(signum)
        worker.terminate()  # torchrun passes it on to its ranks

    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, stop)
    code = worker.wait()
    return EXIT_REQUEUE if stopped and code != 0 else code


def _die_with_parent() -> None:
    """In the worker, before exec: SIGKILL when the job's process dies (killed or preempted), so no worker
    outlives its job and trains beside the resubmitted one."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _torchrun_across_nodes(kind: str, spec: str, nproc: int) -> list[str]:
    """torchrun on this node of a multi-node job; the first node of the job hosts the rendezvous."""
    import submitit

    env = submitit.JobEnvironment()
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={env.num_nodes}", f"--node_rank={env.node}",
            f"--nproc_per_node={nproc}", "--rdzv_backend=c10d", f"--rdzv_id={env.job_id}",
            f"--rdzv_endpoint={env.hostnames[0]}:{RDZV_PORT}", "-m", KINDS[kind].worker, spec]
