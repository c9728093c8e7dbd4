"""Stages launched as Slurm jobs through submitit.

No cluster can exist here: `cluster: local` sends the stage through the same submitit path (submit, poll
the job's state, read its result, cancel) with submitit's own LocalExecutor standing in for sbatch. The
sbatch script a real cluster would get is built by submitit and compared with what a person writes.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.config import SlurmSpec
from core.config_load import load_curriculum
from core.events import describe
from core.slurm_job import sbatch_script
from core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
CURRICULUM = """
name: sl
defaults:
  train: {{steps: {steps}, batch_size: 4, max_length: 48, logging_steps: 1, save_steps: {save}}}
  launch: {{via: slurm, slurm: {{cluster: local, partition: gpu}}}}
stages:
  - {{name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}}
"""


def _start(tmp_path, steps: int, save: int) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "sl.yaml"
    config.write_text(CURRICULUM.format(steps=steps, save=save))
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", str(config), "--batch", "--runs-dir", str(runs)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, runs


def _run_dir(runs: Path) -> Path:
    while not (found := [p for p in runs.glob("*") if (p / "run.db").exists()]):
        time.sleep(0.1)
    return found[0]


def _wait_for(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := check()):
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def _job_processes(folder: Path) -> list[int]:
    """The pids of submitit's own processes for the jobs in `folder` (their command lines name it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes() and b"submitit" in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _logs(run: Path) -> list[str]:
    with RunStore(run / "run.db") as store:
        return [e.data.get("message", "") for e in store.events(kinds=["log"], stage="text")]


def test_a_stage_runs_as_a_job_and_its_state_is_logged(tmp_path):
    proc, runs = _start(tmp_path, steps=3, save=0)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    run = _run_dir(runs)
    logs = _logs(run)
    job = next(p.name.split("_")[0] for p in (run / "stages" / "text" / "slurm").glob("*_submitted.pkl"))
    assert f"worker started (local job {job}, attempt 1, cold start)" in logs
    with RunStore(run / "run.db") as store:
        states = [describe(e)[0] for e in store.events(kinds=["job_state"], stage="text")]
    assert states and states[0].startswith(f"running on local job {job} after")
    assert (run / "stages" / "text" / "final" / "model.safetensors").is_file()
    assert "text step 3/3" in out  # the worker's metrics reached the store from inside the job


def test_a_killed_job_is_submitted_again_and_resumes_from_its_checkpoint(tmp_path):
    proc, runs = _start(tmp_path, steps=400, save=20)
    run = _run_dir(runs)
    checkpoints = run / "stages" / "text" / "checkpoints"
    _wait_for(lambda: list(checkpoints.glob("checkpoint-*/cockpit-complete*")) or
              [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()])
    first = next((run / "stages" / "text" / "slurm").glob("*_submitted.pkl")).name.split("_")[0]
    for pid in _job_processes(run / "stages" / "text" / "slurm"):  # as if the node went away: the job's
        os.kill(pid, signal.SIGKILL)                                # processes die; its worker follows them
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    logs = _logs(run)
    assert f"local job {first} ended INTERRUPTED; submitting it again (1/2)" in logs, logs
    assert sum(m.startswith("final model saved") for m in logs) == 1  # the first job's worker died with it
    with RunStore(run / "run.db") as store:
        resumed = [e for e in store.events(kinds=["resumed"], stage="text") if e.data.get("from_checkpoint")]
        assert store.stage("text")["attempt"] == 2 and store.stage("text")["status"] == "completed"
    assert resumed and resumed[-1].step > 0  # the second job went on from a checkpoint, not from step 0


def test_stop_cancels_the_job(tmp_path):
    proc, runs = _start(tmp_path, steps=2000, save=0)
    run = _run_dir(runs)
    _wait_for(lambda: any(m.startswith("worker started (local job") for m in _logs(run)))
    job = int(next((run / "stages" / "text" / "slurm").glob("*_submitted.pkl")).name.split("_")[0])
    stop = subprocess.run([sys.executable, "-m", "cli.main", "stop", run.name, "--runs-dir", str(runs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert _wait_for(lambda: not Path(f"/proc/{job}").exists() or "zombie" in Path(f"/proc/{job}/status").read_text(),
                     timeout=30)
    with RunStore(run / "run.db") as store:
        assert store.stage("text")["status"] == "stopped"


def test_the_sbatch_script_carries_what_a_person_would_write():
    script = sbatch_script(SlurmSpec(partition="gpu", nodes=2, gpus_per_node=8, time=240, account="lab", qos="high",
                                     mem_gb=200, extra={"constraint": "h100"}, setup=["module load cuda/12.4"]),
                           "sft", 8, Path("/shared/runs/r/stages/sft/slurm"))
    for line in ("#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --time=240", "#SBATCH --account=lab", "#SBATCH --qos=high",
                 "#SBATCH --mem=200GB", "#SBATCH --constraint=h100", "#SBATCH --job-name=cockpit-sft",
                 "module load cuda/12.4", "srun "):
        assert line in script, script


def test_the_slurm_recipe_validates_with_its_launch_on_every_stage():
    cur = load_curriculum(ROOT / "configs" / "recipes" / "qwen3-tool-grpo-slurm.yaml")
    assert {s.launch.via for s in cur.stages} == {"slurm"}
    assert cur.stage("grpo-math").launch.slurm.gpus_per_node == 8
    json.dumps(cur.model_dump(mode="json"))  # the resolved config (stored in the run) serialises


def test_a_queued_job_reads_as_queued_with_the_time_it_waited():
    def said(state: str, waited: float) -> str:
        event = type("E", (), {"kind": "job_state", "step": None, "name": None, "value": None,
                               "data": {"job": "slurm job 1234 (partition gpu)", "state": state, "waited_s": waited}})
        return describe(event)[0]
    assert said("PENDING", 0.4) == "queued on slurm job 1234 (partition gpu)"
    assert said("RUNNING", 312.0) == "running on slurm job 1234 (partition gpu) after 312 s queued"
    assert said("PREEMPTED", 900.0) == "slurm job 1234 (partition gpu): PREEMPTED"
