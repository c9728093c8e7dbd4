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

from core.config import SlurmSpec
from core.kinds import KINDS
from core.worker_proc import worker_command, worker_env

EXIT_REQUEUE = 76  # the job ended without the worker finishing (preempted, timed out, node lost, killed)
ENDED_EARLY = frozenset({"PREEMPTED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "REQUEUED", "INTERRUPTED"})
RDZV_PORT = 29511
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SlurmWorker:
    """One submitted job; `wait`, `terminate` and `describe` as the supervisor uses a WorkerProcess."""

    pid = None  # the worker runs on another machine: no local process to sample

    def __init__(self, job, spec: SlurmSpec):
        self.job, self.spec = job, spec
        self.submitted, self.end_state = time.time(), None

    @classmethod
    def submit(cls, kind: str, spec_path: Path, log: Path, nproc: int, threads: int | None,
               slurm: SlurmSpec, stage: str) -> "SlurmWorker":
        """Submit the stage's worker as one job (one task per node) with its output appended to `log`."""
        import submitit

        executor = submitit.AutoExecutor(folder=log.parent / "slurm", cluster=slurm.cluster)
        executor.update_parameters(**job_parameters(slurm, stage, nproc))
        job = executor.submit(run_worker, kind, str(spec_path), str(log), nproc, threads, slurm.nodes)
        return cls(job, slurm)

    @property
    def state(self) -> str:
        return self.job.state

    def describe(self) -> str:
        where = f" (partition {self.spec.partition})" if self.spec.partition and self.spec.cluster == "slurm" else ""
        return f"{self.spec.cluster} job {self.job.job_id}{where}"

    def wait(self, timeout: float) -> int | None:
        """The worker's exit code, EXIT_REQUEUE for a job ended under it, or None while it is queued or runs."""
        deadline = time.monotonic() + timeout
        while not self.job.done():
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.2, timeout))
        self.end_state = self.job.state.split()[0]
        if self.end_state in ENDED_EARLY:
            return EXIT_REQUEUE
        try:
            return int(self.job.result())
        except Exception:  # noqa: BLE001 - the job failed outside the worker (its traceback is in the slurm folder)
            return 1

    def terminate(self) -> None:
        """Cancel the job and wait for it to end."""
        self.job.cancel(check=False)
        deadline = time.monotonic() + 30
        while not self.job.done() and time.monotonic() < deadline:
            time.sleep(0.2)


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
    return params | ({"slurm_additional_parameters": dict(slurm.extra)} if slurm.extra else {})


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
    output appended to the stage log; returns the worker's exit code."""
    command = worker_command(kind, Path(spec), nproc) if nodes == 1 else _torchrun_across_nodes(kind, spec, nproc)
    with open(log, "ab") as out:
        return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env=worker_env(threads), preexec_fn=_die_with_parent).returncode


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
