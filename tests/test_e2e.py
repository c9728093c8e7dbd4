"""End to end through the CLI: a mini curriculum in batch mode, and a detached run gated by hand."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "mini.yaml"
pytestmark = pytest.mark.slow


def cockpit(*args, runs: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "--runs-dir", str(runs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def show(runs: Path, ref: str = "latest") -> dict:
    return json.loads(cockpit("show", ref, "--json", runs=runs).stdout)


def test_mini_curriculum_in_batch_mode(tmp_path):
    runs = tmp_path / "runs"
    done = cockpit("run", str(MINI), "--batch", "--gate-policy", "approve", runs=runs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "> pretrain: started" in done.stdout and "= sft: gate approve by policy:approve" in done.stdout
    run = show(runs)
    assert run["status"] == "completed"
    assert [s["status"] for s in run["stages"]] == ["completed", "passed", "completed", "passed", "completed"]
    assert [s["from"] for s in run["stages"]] == [None, "pretrain", "sft", "dpo", "grpo"]
    by_name = {s["name"]: s for s in run["stages"]}
    assert by_name["sft"]["gate"]["decision"] == "approve" and by_name["sft"]["gate"]["by"] == "policy:approve"
    assert by_name["grpo"]["gate"]["rules"][0]["reference"] == "sft"
    for name in ("pretrain", "sft", "dpo", "grpo"):
        assert "loss" in by_name[name]["metrics"] and "eval/accuracy" in by_name[name]["metrics"]
    assert "rewards/margins" in by_name["dpo"]["metrics"] and "reward" in by_name["grpo"]["metrics"]
    final = Path(by_name["final"]["checkpoint"])
    assert (final / "model.safetensors").is_file() and not list(final.glob("*.bin"))
    assert run["final_accuracy"] is not None


def test_rules_policy_rejects_a_failing_manual_gate_with_exit_3(tmp_path):
    runs = tmp_path / "runs"
    cfg = tmp_path / "two.yaml"
    cfg.write_text(MINI.read_text().split("  - {name: dpo")[0])
    done = cockpit("run", str(cfg), "--batch", runs=runs)
    assert done.returncode == 3, done.stdout + done.stderr
    run = show(runs)
    assert run["status"] == "rejected"
    assert run["stages"][1]["status"] == "rejected" and run["stages"][1]["gate"]["decision"] == "reject"


def test_detached_run_waits_for_a_manual_gate_decided_from_another_terminal(tmp_path):
    from core.launch import new_run
    from core.supervisor import start_detached
    runs = tmp_path / "runs"
    cfg = tmp_path / "two.yaml"
    cfg.write_text(MINI.read_text().split("  - {name: dpo")[0])
    paths = new_run(cfg, runs)
    pid = start_detached(paths)
    deadline = time.time() + 240
    while show(runs)["stages"][1]["status"] != "gate_pending":
        assert time.time() < deadline, show(runs)
        assert os.path.exists(f"/proc/{pid}"), (paths.supervisor_log).read_text()
        time.sleep(1)
    assert cockpit("gate", paths.id, "pretrain", "approve", runs=runs).returncode == 2
    decided = cockpit("gate", paths.id, "sft", "approve", "--note", "looks right", runs=runs)
    assert decided.returncode == 0, decided.stderr
    while show(runs)["status"] == "running":
        assert time.time() < deadline
        time.sleep(0.5)
    run = show(runs)
    assert run["status"] == "completed"
    gate = run["stages"][1]["gate"]
    assert (gate["decision"], gate["note"]) == ("approve", "looks right") and gate["by"].startswith("cli:")
