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

from core.checkpoints import last_complete_checkpoint
from core.config import SlurmSpec
from core.config_load import load_curriculum
from core.events import describe
from core.slurm_job import sbatch_script
from core.store import RunStore
from test_faults import the_run

ROOT = Path(__file__).resolve().parents[1]
CURRICULUM = """
name: sl
defaults:
  train: {{steps: {steps}, batch_size: 4, max_length: 48, logging_steps: 1, save_steps: {save}}}
  launch: {{via: slurm, slurm: {{cluster: {cluster}, partition: gpu}}}}
stages:
  - {{name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}}
"""


def _start(tmp_path, steps: int, save: int, cluster: str = "local", env: dict | None = None
           ) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "sl.yaml"
    config.write_text(CURRICULUM.format(steps=steps, save=save, cluster=cluster))
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", str(config), "--batch", "--runs-dir", str(runs)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    return proc, runs


def _run_dir(runs: Path) -> Path:
    """The run once created (not `.<id>.creating`, which a glob also matches: a test once waited 120 s on it)."""
    return _wait_for(lambda: runs.exists() and the_run(runs))


def _wait_for(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := check()):
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def _job_processes(folder: Path, which: bytes = b"submitit") -> list[int]:
    """The pids of submitit's own processes for the jobs in `folder` (their command lines name it): its
    controller (`submitit.local._local`) and the job's task (`submitit.core._submit`)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes() and which in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _started_pids(run: Path) -> list[int]:
    with RunStore(run / "run.db") as store:
        return [e.data["pid"] for e in store.events(kinds=["stage_started"], stage="text")]


def _loss_steps(run: Path) -> list[int]:
    with RunStore(run / "run.db") as store:
        return sorted(e.step for e in store.events(kinds=["metric"], stage="text") if e.name == "loss")


def _first_checkpoint(run: Path) -> Path:
    return _wait_for(lambda: last_complete_checkpoint(run / "stages" / "text" / "checkpoints"))


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
    assert states and states[0].startswith(f"running on local job {job}")
    with RunStore(run / "run.db") as store:
        assert not store.events(kinds=["hardware"], stage="text")  # nothing of the job's runs in this process tree
        assert store.get_meta("workers") == []  # the job ended: nothing for a later supervisor to cancel
    assert (run / "stages" / "text" / "final" / "model.safetensors").is_file()
    assert "text step 3/3" in out  # the worker's metrics reached the store from inside the job


def test_a_job_whose_processes_die_is_submitted_again_and_resumes_from_its_checkpoint(tmp_path):
    proc, runs = _start(tmp_path, steps=40, save=5)
    run = _run_dir(runs)
    _first_checkpoint(run)
    first = next((run / "stages" / "text" / "slurm").glob("*_submitted.pkl")).name.split("_")[0]
    for pid in _job_processes(run / "stages" / "text" / "slurm"):  # as if the node went away: the job's
        os.kill(pid, signal.SIGKILL)                                # processes die; its worker follows them
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    logs = _logs(run)
    assert f"local job {first} ended INTERRUPTED; submitting it again (1/2)" in logs, logs
    assert sum(m.startswith("final model saved") for m in logs) == 1  # the first job's worker died with it
    assert _gone(_started_pids(run)[0])
    with RunStore(run / "run.db") as store:
        resumed = [e for e in store.events(kinds=["resumed"], stage="text") if e.data.get("from_checkpoint")]
        assert store.stage("text")["attempt"] == 2 and store.stage("text")["status"] == "completed"
    assert resumed and resumed[-1].step > 0  # the second job went on from a checkpoint, not from step 0
    assert _loss_steps(run) == list(range(1, 41))  # each step once: the first job's later steps superseded


def test_the_stop_signal_slurm_sends_before_a_time_limit_ends_the_job_and_it_resumes(tmp_path):
    proc, runs = _start(tmp_path, steps=40, save=5)
    run = _run_dir(runs)
    _first_checkpoint(run)
    folder = run / "stages" / "text" / "slurm"
    first = next(folder.glob("*_submitted.pkl")).name.split("_")[0]
    (task,) = _job_processes(folder, b"submitit.core._submit")
    os.kill(task, signal.SIGUSR2)  # what sbatch --signal=USR2@90 sends the job's task before its time runs out
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    logs = _logs(run)
    assert (f"local job {first} was signalled to stop (time limit near, preempted or cancelled); submitting it "
            "again (1/2)") in logs, logs
    with RunStore(run / "run.db") as store:
        (resumed,) = [e for e in store.events(kinds=["resumed"], stage="text") if e.data.get("from_checkpoint")]
        assert store.stage("text")["attempt"] == 2 and store.stage("text")["status"] == "completed"
    assert resumed.step > 0
    assert _loss_steps(run) == list(range(1, 41))
    assert (run / "stages" / "text" / "final" / "model.safetensors").is_file()


def test_a_job_left_by_a_dead_supervisor_is_cancelled_before_its_stage_runs_again(tmp_path):
    proc, runs = _start(tmp_path, steps=4, save=0, env={"COCKPIT_FAULT_SLEEP_AT_STEP": "3"})  # the job hangs
    run = _run_dir(runs)
    _wait_for(lambda: _loss_steps(run)[-1:] == [2])
    (controller,) = _job_processes(run / "stages" / "text" / "slurm", b"submitit.local._local")
    proc.kill()  # the supervisor dies; its job goes on (and holds the pipe of its output open)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert not _gone(controller)
    resumed = subprocess.run([sys.executable, "-m", "cli.main", "resume", run.name, "--batch", "--runs-dir",
                              str(runs)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    with RunStore(run / "run.db") as store:
        logs = [e.data.get("message", "") for e in store.events(kinds=["log"])]
        assert store.stage("text")["status"] == "completed"
    assert f"cancelled local job {controller} left by a dead supervisor" in logs, logs
    assert _gone(controller) and _gone(_started_pids(run)[0])


def test_a_job_that_cannot_be_submitted_fails_its_stage_with_the_reason(tmp_path):
    proc, runs = _start(tmp_path, steps=2, save=0, cluster="slurm")  # this machine has no Slurm
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-2000:]
    with RunStore(_run_dir(runs) / "run.db") as store:
        row = store.stage("text")
    assert row["status"] == "failed"
    assert row["reason"].startswith('could not submit the slurm job: Could not detect "srun"'), row["reason"]


def test_stop_cancels_the_job(tmp_path):
    proc, runs = _start(tmp_path, steps=2000, save=0)
    run = _run_dir(runs)
    _wait_for(lambda: _started_pids(run))  # the job runs and its worker has started
    job = int(next((run / "stages" / "text" / "slurm").glob("*_submitted.pkl")).name.split("_")[0])
    stop = subprocess.run([sys.executable, "-m", "cli.main", "stop", run.name, "--runs-dir", str(runs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert _wait_for(lambda: _gone(job), timeout=30)
    assert all(_gone(pid) for pid in _started_pids(run))  # and the worker with it
    with RunStore(run / "run.db") as store:
        assert store.stage("text")["status"] == "stopped"


def test_the_sbatch_script_carries_what_a_person_would_write():
    script = sbatch_script(SlurmSpec(partition="gpu", nodes=2, gpus_per_node=8, time=240, account="lab", qos="high",
                                     mem_gb=200, extra={"constraint": "h100"}, setup=["module load cuda/12.4"]),
                           "sft", 8, Path("/shared/runs/r/stages/sft/slurm"))
    for line in ("#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --time=240", "#SBATCH --account=lab", "#SBATCH --qos=high",
                 "#SBATCH --mem=200GB", "#SBATCH --constraint=h100", "#SBATCH --job-name=cockpit-sft",
                 "#SBATCH --no-requeue", "module load cuda/12.4", "srun "):
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
    assert said("RUNNING", 312.0) == "running on slurm job 1234 (partition gpu) after 5m12s queued"
    assert said("RUNNING", 0.3) == "running on slurm job 1234 (partition gpu)"
    assert said("PREEMPTED", 900.0) == "slurm job 1234 (partition gpu): PREEMPTED"


def test_a_wrong_launch_is_named_by_file_line_and_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text('name: bad\ndefaults:\n  launch: {via: slurm, slurm: {partiton: gpu, nodes: 0}}\nstages:\n'
                      '  - {name: a, kind: pretrain, data: "builtin:arithmetic-text", launch: {via: slurmm}}\n')
    done = subprocess.run([sys.executable, "-m", "cli.main", "check", str(config)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    for said in (f"{config}:3: defaults.launch.slurm.nodes: Input should be greater than 0",
                 f"{config}:3: defaults.launch.slurm.partiton: unknown key (did you mean 'partition'?)",
                 f"{config}:5: stages.0.launch.via: Input should be 'local', 'slurm' or 'skypilot' (got 'slurmm')"):
        assert said in done.stderr, done.stderr
