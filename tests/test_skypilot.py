"""Stages launched as SkyPilot managed jobs.

No cloud can be reached here, so no job is launched: SkyPilot's own API builds and validates each stage's task
(in SkyPilot's environment, .venv-sky, which `make test` creates), the task is compared with one written by hand,
and what travels back from a job is exercised for real: a tiny stage's worker prints its events, they are
relayed into a run store, and a restarted job resumes from its newest checkpoint. SkyPilot downloads its
accelerator catalog on first use; with no network its rows are written into a scratch SkyPilot home.
"""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import WorkerRun
from core.config_load import load_curriculum
from core.errors import ConfigErrors
from core.event_relay import PREFIX, relay
from core.skypilot_job import bucket_path, placeholder_task, stage_task, validate
from core.worker_spec import LATEST, WorkerSpec

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs/recipes/qwen3-tool-grpo-skypilot.yaml"
RUN_ID = "20261206-120000-qwen3-tool-grpo-skypilot"
SKY_PYTHON = os.environ.get("COCKPIT_SKYPILOT_PYTHON") or str(ROOT / ".venv-sky/bin/python")
needs_skypilot = pytest.mark.skipif(not Path(SKY_PYTHON).exists(),
                                    reason="SkyPilot's environment is missing (make test creates .venv-sky)")
CATALOG = """AcceleratorName,Clouds
A100,"['AWS', 'Azure', 'GCP']"
A100-80GB,"['AWS', 'Azure', 'GCP']"
H100,"['AWS', 'Azure', 'GCP']"
L4,"['AWS', 'GCP']"
"""

# What a person writes by hand for the recipe's grpo-math stage (SkyPilot's task YAML).
BY_HAND = f"""
name: cockpit-grpo-math-{RUN_ID}
workdir: {ROOT}
num_nodes: 1
resources:
  accelerators: H100:1
  use_spot: true
  disk_size: 256
  job_recovery: {{max_restarts_on_errors: 1}}
envs: {{HF_HUB_OFFLINE: "0", HF_DATASETS_OFFLINE: "0"}}
secrets: {{HF_TOKEN: null}}
file_mounts:
  /cockpit/run: {{source: s3://my-team-cockpit/runs/{RUN_ID}, mode: MOUNT_CACHED}}
  /cockpit/spec.json: SPEC
setup: pip install -e .
run: python -u -m workers.stages.grpo /cockpit/spec.json
"""


@pytest.fixture
def sky_home(tmp_path, monkeypatch):
    """A SkyPilot home with its catalog in place (SkyPilot fetches it from GitHub on first use)."""
    catalog = tmp_path / "home/.sky/catalogs/v8/common/accelerators.csv"
    catalog.parent.mkdir(parents=True)
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COCKPIT_SKYPILOT_PYTHON", SKY_PYTHON)
    return tmp_path / "home"


def _spec(run: Path, cur, stage: str, parent: str, **extra) -> Path:
    """The spec the supervisor writes for `stage` of a run in `run` (local paths)."""
    spec = WorkerSpec(run_dir=str(run), db=str(run / "run.db"), output_dir=str(run / "stages" / stage),
                      stage=cur.stage(stage), model=cur.model, input_model=str(run / "stages" / parent / "final"),
                      **extra)
    return spec.write(run / "stages" / stage / "spec.json")


def test_the_task_for_a_stage_is_the_one_a_person_writes(tmp_path):
    cur = load_curriculum(RECIPE)
    run = tmp_path / RUN_ID
    spec = _spec(run, cur, "grpo-math", parent="tool-sft")
    task = stage_task(cur.stage("grpo-math"), spec, RUN_ID)
    remote_file = run / "stages/grpo-math/spec.skypilot.json"
    assert task == yaml.safe_load(BY_HAND.replace("SPEC", str(remote_file)))
    remote = json.loads(remote_file.read_text())
    # The parent ran on SkyPilot: its final model is in the bucket, where this job's mount shows it
    assert remote["input_model"] == "/cockpit/run/stages/tool-sft/final"
    assert (remote["run_dir"], remote["db"], remote["output_dir"]) == ("/cockpit/run", "-",
                                                                       "/cockpit/run/stages/grpo-math")
    assert remote["resume_from"] == LATEST
    assert bucket_path(cur.stage("grpo-math"), RUN_ID, "stages/grpo-math/final") == \
        f"s3://my-team-cockpit/runs/{RUN_ID}/stages/grpo-math/final"  # the stage's checkpoint in `cockpit show`
    # Files in the checkout are read in the synced workdir
    assert remote["stage"]["data"] == "configs/recipes/data/gsm8k-sample.jsonl"
    assert remote["stage"]["eval"]["data"] == "configs/recipes/data/gsm8k-sample-eval.jsonl"


def test_local_inputs_are_uploaded_and_several_nodes_run_torchrun(tmp_path):
    cur = load_curriculum(RECIPE, ["defaults.launch.skypilot.num_nodes=2",
                                   "defaults.launch.skypilot.accelerators=H100:8"])
    run, outside = tmp_path / RUN_ID, tmp_path / "elsewhere"
    (run / "stages/tool-sft/final").mkdir(parents=True)  # a local stage's model: only this machine has it
    (outside / "teacher").mkdir(parents=True)
    spec = _spec(run, cur, "grpo-math", parent="tool-sft", teacher_model=str(outside / "teacher"))
    task = stage_task(cur.stage("grpo-math"), spec, RUN_ID)
    remote = json.loads((run / "stages/grpo-math/spec.skypilot.json").read_text())
    assert remote["input_model"] == "/cockpit/inputs/0-final"
    assert remote["teacher_model"] == "/cockpit/inputs/1-teacher"
    assert task["file_mounts"]["/cockpit/inputs/0-final"] == str(run / "stages/tool-sft/final")
    assert task["file_mounts"]["/cockpit/inputs/1-teacher"] == str(outside / "teacher")
    assert task["num_nodes"] == 2
    assert "--nnodes=2 --node_rank=$SKYPILOT_NODE_RANK --nproc_per_node=8" in task["run"]
    assert task["run"].endswith("-m workers.stages.grpo /cockpit/spec.json")


def test_a_local_stage_cannot_start_from_a_skypilot_stage():
    with pytest.raises(ConfigErrors) as err:
        load_curriculum(RECIPE, ["stages.merged.launch.via=local"])
    assert "'grpo-code' runs on SkyPilot and leaves its model in its bucket" in str(err.value)
    with pytest.raises(ConfigErrors) as err:
        load_curriculum(RECIPE, ["defaults.launch.skypilot.bucket=null"])
    assert "needs launch.skypilot.bucket" in str(err.value)


@needs_skypilot
def test_skypilot_validates_each_task(sky_home):
    cur = load_curriculum(RECIPE)
    good, bad = placeholder_task(cur.stage("tool-sft")), placeholder_task(cur.stage("grpo-math"))
    bad["resources"]["acelerators"] = "H100:1"
    verdicts = validate([good, bad], SKY_PYTHON)
    assert verdicts[0]["yaml"]["resources"]["accelerators"] == {"H100": 1}  # as SkyPilot reads it
    assert verdicts[0]["yaml"]["file_mounts"]["/cockpit/run"]["mode"] == "MOUNT_CACHED"
    assert "did you mean 'accelerators'" in verdicts[1]["error"]


@needs_skypilot
def test_cockpit_check_has_skypilot_validate_the_recipe(sky_home):
    def check(*sets):
        return subprocess.run([sys.executable, "-m", "cli.main", "check", str(RECIPE),
                               *[a for s in sets for a in ("--set", s)]], cwd=ROOT, capture_output=True, text=True)

    ok = check()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "skypilot 1×H100:1 spot" in ok.stdout
    bad = check("defaults.launch.skypilot.resources.disk_tier=fastest-ever")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "qwen3-tool-grpo-skypilot.yaml:19: defaults.launch.skypilot: SkyPilot rejects the task" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "cli.main", "check", str(RECIPE)], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "COCKPIT_SKYPILOT_PYTHON": str(sky_home / "no-python")})
    assert missing.returncode == 2 and "cannot run SkyPilot's python" in missing.stderr


def test_a_jobs_events_come_back_through_its_log(tmp_path):
    """The worker as a SkyPilot job runs it: events printed (db "-"), relayed into the store; then the job is
    restarted with the same spec after losing its newest checkpoint and resumes from the one before."""
    run = WorkerRun(tmp_path / "run")
    spec = run.spec("text", kind="pretrain", data="builtin:arithmetic-text", lora=False, eval=False,
                    train={"steps": 4, "save_steps": 2}, resume_from=LATEST)
    raw = json.loads(spec.read_text())
    spec.write_text(json.dumps(raw | {"db": "-"}))

    def job() -> str:
        done = run.run("pretrain", spec)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        log = io.StringIO()
        with run.store() as store:
            assert relay(io.StringIO(done.stdout), store, log) > 0
        return log.getvalue()

    log = job()
    assert PREFIX not in log and "[info]" in log  # the job's own output goes to the stage log
    with run.store() as store:
        kinds = [e.kind for e in store.events(stage="text")]
        losses = [e.step for e in store.events(kinds=["metric"], stage="text") if e.name == "loss"]
    assert "stage_started" in kinds and kinds.count("checkpoint_saved") == 2
    assert losses == [1, 2, 3, 4]
    assert (run.final("text") / "model.safetensors").exists()

    shutil.rmtree(run.root / "stages/text/checkpoints/checkpoint-4")  # preempted before its last save
    job()
    with run.store() as store:
        (resumed,) = store.events(kinds=["resumed"], stage="text")
        losses = [e.step for e in store.events(kinds=["metric"], stage="text") if e.name == "loss"]
    assert resumed.step == 2 and resumed.data["from_checkpoint"].endswith("checkpoint-2")
    assert losses == [1, 2, 3, 4]  # steps 3 and 4 of the first attempt superseded by the second's


@needs_skypilot
def test_a_stage_skypilot_refuses_fails_with_skypilots_words(sky_home, tmp_path):
    """Through the supervisor to SkyPilot's real API (its API server starts here): with no cloud enabled the
    launch is refused, and the stage fails with SkyPilot's reason instead of waiting for a job."""
    config = tmp_path / "sk.yaml"
    config.write_text(f"""
name: sk
defaults:
  train: {{steps: 2, batch_size: 4, max_length: 48}}
  launch: {{via: skypilot, skypilot: {{bucket: "s3://cockpit-test/runs", workdir: {ROOT}}}}}
stages:
  - {{name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}}
""")
    try:
        done = subprocess.run([sys.executable, "-m", "cli.main", "--runs-dir", str(tmp_path / "runs"), "run",
                               str(config), "--batch"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([str(Path(SKY_PYTHON).with_name("sky")), "api", "stop"], capture_output=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "text: finished failed: skypilot launch failed:" in done.stdout
    assert "no cloud storage is available" in done.stdout
