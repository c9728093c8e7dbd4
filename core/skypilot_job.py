"""A stage's worker as a SkyPilot managed job: the task built from the stage, submitted and watched.

The supervisor stays the owner of the run. It builds a SkyPilot task from the stage (resources, the cockpit
checkout as workdir, setup, the worker as run, file mounts), launches it as a managed job, polls its state
(PENDING/STARTING/RECOVERING are reported as queued), follows its log, and cancels it on `cockpit stop`.

What comes back, and how: the job's nodes cannot reach the run store, so the worker prints its events
(core.event_relay) and the supervisor files them from the job's log, which also feeds the stage's log file.
Checkpoints and final models stay in `bucket`, mounted (MOUNT_CACHED) at /cockpit/run on every node: a later
SkyPilot stage starts from its parent's final there, and when SkyPilot recovers a preempted job the worker
resumes from the newest checkpoint in it (`resume_from: latest`). Local inputs (a model folder, data files, a
local stage's final model) are uploaded as file mounts; files inside the workdir are read there.

SkyPilot runs in its own interpreter (core.skypilot_bridge explains why); `Bridge` calls it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from core.config import SkyPilotSpec, StageSpec
from core.event_relay import relay
from core.events import JOB_LIVE
from core.kinds import KINDS
from core.slurm_job import SubmitError
from core.worker_spec import LATEST, WorkerSpec

REMOTE_RUN = "/cockpit/run"
REMOTE_INPUTS = "/cockpit/inputs"
REMOTE_SPEC = "/cockpit/spec.json"
RDZV_PORT = 29511
STATE_POLL_S = 15.0
LOST_AFTER_S = 900.0  # a job SkyPilot cannot tell about for this long has ended (LOST)
ENDED_OK = "SUCCEEDED"


class Bridge:
    """core/skypilot_bridge.py run by SkyPilot's interpreter."""

    SCRIPT = Path(__file__).with_name("skypilot_bridge.py")

    def __init__(self, python: str | None):
        self.python = python or find_python()

    def command(self, *args: str) -> list[str]:
        return [self.python, "-u", str(self.SCRIPT), *args]

    def call(self, *args: str, stdin: dict | None = None, timeout: float = 600) -> dict:
        """One command's answer; SubmitError with SkyPilot's last words when there is none."""
        try:
            done = subprocess.run(self.command(*args), input=json.dumps(stdin) if stdin is not None else None,
                                  capture_output=True, text=True, timeout=timeout)
        except OSError as exc:
            raise SubmitError(f"cannot run SkyPilot's python {self.python}: {exc.strerror}") from None
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("@bridge "):
                return json.loads(line.removeprefix("@bridge "))
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SubmitError(f"skypilot {args[0]} failed: {last}")


CHECKOUT_SKY_PYTHON = Path(__file__).resolve().parents[1] / ".venv-sky" / "bin" / "python"


def find_python() -> str:
    """The interpreter that has SkyPilot: $COCKPIT_SKYPILOT_PYTHON, else this checkout's .venv-sky (what `make`
    creates), else the one behind `sky` on PATH."""
    if env := os.environ.get("COCKPIT_SKYPILOT_PYTHON"):
        return env
    if CHECKOUT_SKY_PYTHON.exists():
        return str(CHECKOUT_SKY_PYTHON)
    sky = shutil.which("sky")
    if sky:
        first = Path(sky).read_bytes()[:300].split(b"\n")[0].decode(errors="replace")
        if first.startswith("#!") and Path(first[2:].strip().split()[0]).exists():
            return first[2:].strip().split()[0]
    raise SubmitError("SkyPilot not found: `make .venv-sky/.installed` in this checkout, or install it in its own "
                      "environment (python3 -m venv ~/.sky-venv && "
                      "~/.sky-venv/bin/pip install skypilot[aws]) and set launch.skypilot.python or "
                      "COCKPIT_SKYPILOT_PYTHON to its python")


def validate(configs: list[dict], python: str | None) -> list[dict]:
    """Each task as SkyPilot reads it: {"yaml": its YAML as a dict} or {"error": SkyPilot's words}."""
    return Bridge(python).call("validate", stdin=configs, timeout=300)


# -- the task ---------------------------------------------------------------------------------------
def remote_spec(spec: WorkerSpec, workdir: Path) -> tuple[WorkerSpec, dict[str, str]]:
    """The spec as the job's nodes see it, and the local files to upload (remote path -> local path)."""
    uploads: dict[str, str] = {}
    run_dir = Path(spec.run_dir)

    def where(value):
        if isinstance(value, dict):
            return {k: where(v) for k, v in value.items()}
        if isinstance(value, list):
            return [where(v) for v in value]
        if not isinstance(value, str) or not value.startswith("/"):
            return value
        path, _, member = value.partition(".py:")  # file.py:function
        path = Path(path + ".py" if member else path)
        if not path.exists():  # in the run directory: a SkyPilot stage's output, in the bucket
            return _under(value, run_dir, REMOTE_RUN) if run_dir in Path(value).parents else value
        if workdir in path.parents and run_dir not in path.parents:
            return str(path.relative_to(workdir)) + (f":{member}" if member else "")  # synced with the workdir
        remote = next((r for r, local in uploads.items() if local == str(path)), None) \
            or f"{REMOTE_INPUTS}/{len(uploads)}-{path.name}"  # each file uploaded once
        uploads[remote] = str(path)
        return remote + (f":{member}" if member else "")

    raw = spec.model_dump(mode="json", by_alias=True)
    launch = raw["stage"].pop("launch")  # the supervisor's business, not the worker's: left as it is
    moved = {k: where(raw[k]) for k in ("stage", "model", "input_model", "teacher_model", "experts")}
    moved["stage"]["launch"] = launch
    remote = WorkerSpec.model_validate(raw | moved | {
        "run_dir": REMOTE_RUN, "db": "-", "output_dir": _under(spec.output_dir, run_dir, REMOTE_RUN),
        "resume_from": LATEST})
    return remote, uploads


def _under(path: str, root: Path, remote_root: str) -> str:
    return f"{remote_root}/{Path(path).relative_to(root).as_posix()}"


def task_config(stage: StageSpec, run_id: str, spec_file: Path, uploads: dict[str, str], workdir: Path) -> dict:
    """The SkyPilot task YAML (as a dict) for one attempt of a stage; `spec_file` is the remote spec, written
    locally."""
    sky = stage.launch.skypilot
    gpus = max(1, int(float(sky.accelerators.partition(":")[2] or 1))) if sky.accelerators else 1
    resources = {"accelerators": sky.accelerators, "infra": sky.infra, "use_spot": sky.use_spot or None,
                 "disk_size": sky.disk_size,
                 "job_recovery": {"max_restarts_on_errors": sky.max_restarts_on_errors}
                 if sky.max_restarts_on_errors else None}
    config = {
        "name": f"cockpit-{stage.name}-{run_id}",
        "workdir": str(workdir),
        "num_nodes": sky.num_nodes,
        "resources": {k: v for k, v in resources.items() if v is not None} | sky.resources,
        "envs": {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"} | sky.envs,
        "secrets": {name: None for name in sky.secrets},
        "file_mounts": {REMOTE_RUN: {"source": bucket_path(stage, run_id), "mode": "MOUNT_CACHED"},
                        REMOTE_SPEC: str(spec_file), **uploads},
        "setup": "\n".join(sky.setup),
        "run": run_command(stage.kind, sky.num_nodes, max(gpus, stage.train.nproc)),
    }
    return {k: v for k, v in config.items() if v not in ({}, "", None)}


def bucket_path(stage: StageSpec, run_id: str, inside: str = "") -> str:
    """Where the run's directory (or `inside` it) lives in the stage's bucket."""
    return "/".join(filter(None, [stage.launch.skypilot.bucket.rstrip("/"), run_id, inside]))


def run_command(kind: str, nodes: int, per_node: int) -> str:
    """The worker on each node: plain python, or torchrun across the job's nodes and GPUs (rank 0's node hosts
    the rendezvous)."""
    module = KINDS[kind].worker
    if nodes == 1 and per_node == 1:
        return f"python -u -m {module} {REMOTE_SPEC}"
    return ("MASTER_ADDR=$(echo \"$SKYPILOT_NODE_IPS\" | head -n1)\n"
            f"python -u -m torch.distributed.run --nnodes={nodes} --node_rank=$SKYPILOT_NODE_RANK "
            f"--nproc_per_node={per_node} --master_addr=$MASTER_ADDR --master_port={RDZV_PORT} "
            f"-m {module} {REMOTE_SPEC}")


def stage_task(stage: StageSpec, spec_path: Path, run_id: str) -> dict:
    """The task for the spec the supervisor wrote; the remote spec is written beside it."""
    from core.worker_spec import read_spec

    workdir = Path(stage.launch.skypilot.workdir)
    remote, uploads = remote_spec(read_spec(spec_path), workdir)
    remote_file = remote.write(spec_path.with_name("spec.skypilot.json"))
    return task_config(stage, run_id, remote_file, uploads, workdir)


def placeholder_task(stage: StageSpec) -> dict:
    """The task before a run exists (`cockpit check`): no run id, no spec, no uploads yet."""
    return task_config(stage, "run-id", Path(REMOTE_SPEC), {}, Path(stage.launch.skypilot.workdir))


# -- the job ----------------------------------------------------------------------------------------
class SkyPilotWorker:
    """One managed job; `wait`, `terminate`, `describe` and `state` as the supervisor uses a SlurmWorker."""

    pid = None  # the worker runs in the cloud: no local process to sample

    def __init__(self, bridge: Bridge, job_id: int, spec: SkyPilotSpec, log: Path, store):
        self.bridge, self.job_id, self.spec = bridge, job_id, spec
        self.submitted, self.reason = time.time(), None
        self.state = "UNKNOWN"
        self._ended = threading.Event()
        self._tail = subprocess.Popen(bridge.command("logs", str(job_id)), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self._threads = [threading.Thread(target=self._relay, args=(log, store), daemon=True, name="sky-log"),
                         threading.Thread(target=self._poll, daemon=True, name="sky-state")]
        for thread in self._threads:
            thread.start()

    @classmethod
    def submit(cls, stage: StageSpec, spec_path: Path, log: Path, store, run_id: str) -> "SkyPilotWorker":
        """Launch the stage as a managed job named after the run and the stage."""
        bridge = Bridge(stage.launch.skypilot.python)
        config = stage_task(stage, spec_path, run_id)
        try:
            job = bridge.call("launch", config["name"], stdin=config)
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise SubmitError(f"could not launch the SkyPilot job: {exc}") from exc
        return cls(bridge, int(job["job_id"]), stage.launch.skypilot, log, store)

    def describe(self) -> str:
        where = " ".join(filter(None, [self.spec.accelerators or "cpu", "spot" if self.spec.use_spot else "",
                                       f"on {self.spec.infra}" if self.spec.infra else ""]))
        return f"skypilot job {self.job_id} ({where})"

    def ref(self) -> dict:
        """What cancels the job after this process is gone (`cancel_left_job`)."""
        return {"cluster": "skypilot", "job_id": self.job_id, "python": self.bridge.python}

    def wait(self, timeout: float) -> int | None:
        """0 once the job succeeded, 1 once it failed or was cancelled; None while queued or running."""
        if not self._ended.wait(timeout):
            return None
        self._threads[0].join(timeout=30)  # the log's last events reach the store before the gate reads it
        return 0 if self.state == ENDED_OK else 1

    def terminate(self) -> None:
        """Cancel the job and wait up to two minutes for SkyPilot to say it ended."""
        self.bridge.call("cancel", str(self.job_id), timeout=120)
        self._ended.wait(120)

    def _poll(self) -> None:
        known = time.monotonic()
        while not self._ended.is_set():
            try:
                got = self.bridge.call("state", str(self.job_id), timeout=120)
            except (SubmitError, subprocess.TimeoutExpired) as exc:
                got = {"status": None, "reason": str(exc)}  # the API server is away for now: keep asking
            self.state = got.get("status") or "UNKNOWN"
            if self.state != "UNKNOWN":
                known = time.monotonic()
            elif time.monotonic() - known > LOST_AFTER_S:
                self.state, got["reason"] = "LOST", f"SkyPilot has not known it for {LOST_AFTER_S // 60:.0f} min " \
                    f"({got.get('reason')})"
            if self.state not in JOB_LIVE:
                self.reason = None if self.state == ENDED_OK else \
                    f"{self.describe()} ended {self.state}" + (f": {got['reason']}" if got.get("reason") else "")
                self._ended.set()
                return
            time.sleep(2.0 if self.state == "UNKNOWN" else STATE_POLL_S)

    def _relay(self, log: Path, store) -> None:
        with open(log, "a") as out:
            relay(self._tail.stdout, store, out)


def cancel_left_job(ref: dict) -> bool:
    """Cancel a managed job a dead supervisor left; False when it had already ended."""
    bridge = Bridge(ref["python"])
    try:
        if bridge.call("state", str(ref["job_id"]), timeout=120).get("status") not in JOB_LIVE - {"UNKNOWN"}:
            return False
        bridge.call("cancel", str(ref["job_id"]), timeout=120)
    except (SubmitError, subprocess.TimeoutExpired):
        return False
    return True
