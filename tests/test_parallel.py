"""`parallel: N`: stages whose inputs are ready run at once, each on its share of the machine."""
import json
import os
import signal
from pathlib import Path

import pytest

from core.config import StageSpec
from core.config_load import load_curriculum
from core.device_pool import Allotment, DevicePool, visible_gpus
from core.errors import ConfigError
from core.launch import new_run
from core.store import RunStore
from core.supervisor import start_detached
from core.worker_proc import pinned_threads, worker_env
from test_faults import cockpit, the_run, wait_for

TWO_LONG = """
name: twins
parallel: 2
defaults: {train: {steps: 400, batch_size: 8, max_length: 32, logging_steps: 1, save_steps: 10}}
stages:
  - {name: left, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}
  - {name: right, kind: pretrain, from: base, data: "builtin:arithmetic-text", lora: false, eval: false}
"""


def assert_ran_side_by_side(run: Path, first: str, together: tuple[str, str]) -> None:
    """`first` ended before either of `together` started; those two ran at once, each on half the cores."""
    with RunStore(run / "run.db") as store:
        spans = {s: (store.stage(s)["started_at"], store.stage(s)["finished_at"]) for s in (first, *together)}
        threads = {store.events(kinds=["stage_started"], stage=s)[-1].data["threads"] for s in together}
        assert store.get_meta("workers") == []  # nothing left for a later supervisor to stop
    assert spans[first][1] <= min(spans[s][0] for s in together)
    assert max(spans[s][0] for s in together) < min(spans[s][1] for s in together)  # overlap
    assert threads == {max(1, pinned_threads(None) // 2)}


def _started_pids(run: Path) -> dict[str, int]:
    with RunStore(run / "run.db") as store:
        return {e.stage: e.data["pid"] for e in store.events(kinds=["stage_started"])}


def test_a_dead_supervisor_leaves_two_workers_and_resume_stops_both_then_finishes(tmp_path, monkeypatch):
    """Both workers hang at step 5 (so both are alive when the supervisor dies); the run shows interrupted,
    and resume stops both left-behind worker groups before it trains each stage again (without the hang)."""
    runs = tmp_path / "runs"
    config = tmp_path / "twins.yaml"
    config.write_text(TWO_LONG.replace("steps: 400", "steps: 30"))
    paths = new_run(config, runs)
    monkeypatch.setenv("COCKPIT_FAULT_SLEEP_AT_STEP", "5")
    pid = start_detached(paths)
    monkeypatch.delenv("COCKPIT_FAULT_SLEEP_AT_STEP")
    orphans = wait_for(lambda: len(pids := _started_pids(paths.root)) == 2 and pids, what="both stages started")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: json.loads(cockpit("show", paths.id, "--json", runs=runs).stdout)["status"] == "interrupted",
             timeout=30, what="interrupted status")
    resumed = cockpit("resume", paths.id, "--batch", runs=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not any(Path(f"/proc/{p}").exists() for p in orphans.values()), "both orphaned workers are stopped"
    with RunStore(paths.db) as store:
        reaped = [e for e in store.events(kinds=["log"]) if "left by a dead supervisor" in e.data["message"]]
        assert len(reaped) == 2
        for stage in ("left", "right"):
            assert store.stage(stage)["status"] == "completed"
            steps = [e.step for e in store.events(kinds=["metric"], stage=stage) if e.name == "loss"]
            assert sorted(steps) == list(range(1, 31))  # each step once: the hung attempt's superseded


def test_stop_ends_every_stage_that_runs(tmp_path):
    runs = tmp_path / "runs"
    config = tmp_path / "twins.yaml"
    config.write_text(TWO_LONG)
    proc = cockpit("run", str(config), "--batch", runs=runs, wait=False)
    run = wait_for(lambda: runs.exists() and the_run(runs), what="run")
    workers = wait_for(lambda: len(pids := _started_pids(run)) == 2 and pids, what="both stages started")
    assert cockpit("stop", "latest", runs=runs).returncode == 0
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    show = json.loads(cockpit("show", "latest", "--json", runs=runs).stdout)
    assert show["status"] == "stopped" and {s["status"] for s in show["stages"]} == {"stopped"}
    assert not any(Path(f"/proc/{p}").exists() for p in workers.values())
    with RunStore(run / "run.db") as store:
        ends = [e.kind for e in store.events(kinds=["stage_finished", "run_finished"])]
    assert ends == ["stage_finished", "stage_finished", "run_finished"]  # the run ends after both its stages


def _stage(name: str, nproc: int = 1, via: str = "local") -> StageSpec:
    return StageSpec.model_validate({"name": name, "kind": "pretrain", "data": "builtin:arithmetic-text",
                                     "train": {"nproc": nproc}, "launch": {"via": via}})


def test_stages_at_once_take_gpus_of_their_own(monkeypatch):
    """Eight GPU ids stand in for a GPU machine (there is none here): the allotments are what the workers'
    CUDA_VISIBLE_DEVICES will say."""
    pool = DevicePool(visible_gpus(8), cores=32, parallel=4)
    one, four = pool.take(_stage("a")), pool.take(_stage("b", nproc=4))
    assert (one.gpus, four.gpus) == (("0",), ("1", "2", "3", "4")) and (one.threads, four.threads) == (8, 2)
    assert pool.take(_stage("c", nproc=4)) is None  # three left: it waits for one of the others to end
    assert pool.take(_stage("d", via="slurm")) == Allotment()  # a job on the cluster takes nothing here
    pool.give_back(one)
    assert pool.take(_stage("c", nproc=4)).gpus == ("0", "5", "6", "7")
    assert pool.take(_stage("e", nproc=16)) is None  # more than the machine has: all of them, once free
    assert worker_env(2, ("0", "5"))["CUDA_VISIBLE_DEVICES"] == "0,5"
    assert DevicePool([], cores=2, parallel=2).take(_stage("cpu")) == Allotment(threads=1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the supervisor was given two of the eight
    assert DevicePool(visible_gpus(8), cores=8, parallel=2).take(_stage("f", nproc=2)).gpus == ("2", "3")


def test_parallel_is_checked_and_shown(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(TWO_LONG.replace("parallel: 2", "parallel: 0"))
    with pytest.raises(ConfigError, match="parallel"):
        load_curriculum(config)
    config.write_text(TWO_LONG)
    checked = cockpit("check", str(config), runs=tmp_path / "runs")
    assert checked.returncode == 0 and "2 stages, 2 at once" in checked.stdout, checked.stdout
