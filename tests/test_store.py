"""Run store: batched writes, superseding, decisions, and a reader that never blocks a writer."""
import subprocess
import sys
import time

from core.store import RunStore


def make_store(tmp_path) -> RunStore:
    return RunStore.create(tmp_path / "run.db", {"id": "r", "status": "created"},
                           [{"name": "a", "kind": "sft", "total_steps": 10}, {"name": "b", "kind": "dpo", "from": "a"}])


def test_schema_meta_and_stages(tmp_path):
    store = make_store(tmp_path)
    assert store.meta() == {"id": "r", "status": "created"}
    assert [(s["name"], s["from_stage"], s["status"]) for s in store.stages()] == [("a", None, "waiting"),
                                                                                  ("b", "a", "waiting")]
    store.update_stage("a", status="running", attempt=1)
    assert store.stage("a")["status"] == "running"
    store.close()


def test_metrics_keep_trl_names_and_last_value_wins(tmp_path):
    store = make_store(tmp_path)
    store.append_metrics("a", 1, {"loss": 2.0, "rewards/margins": 0.1, "epoch": 0.1, "flag": True, "text": "x"})
    store.append_metrics("a", 2, {"loss": 1.5})
    store.append("eval_result", stage="a", name="eval/accuracy", value=0.75, now=True)
    assert store.final_metrics("a") == {"loss": 1.5, "rewards/margins": 0.1, "epoch": 0.1, "eval/accuracy": 0.75}
    assert store.last_step("a") == 2
    store.close()


def test_writes_are_batched_until_flush(tmp_path):
    writer = RunStore.create(tmp_path / "run.db", {}, [{"name": "a", "kind": "sft"}])
    writer._flush_s = 60  # nothing time-based during this test
    reader = RunStore(tmp_path / "run.db")
    writer.append_metrics("a", 1, {"loss": 1.0})
    assert reader.events(kinds=["metric"]) == []
    writer.flush()
    assert [e.value for e in reader.events(kinds=["metric"])] == [1.0]
    writer.close()
    reader.close()


def test_supersede_hides_steps_after_a_resume_point(tmp_path):
    store = make_store(tmp_path)
    for step in range(1, 6):
        store.append_metrics("a", step, {"loss": float(step)})
    store.flush()
    store.supersede_after("a", 3)
    for step in (4, 5):
        store.append_metrics("a", step, {"loss": 10.0 + step})
    store.flush()
    steps = [(e.step, e.value) for e in store.events(kinds=["metric"], stage="a")]
    assert steps == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0)]
    assert len(store.events(kinds=["metric"], include_superseded=True)) == 7
    store.close()


def test_decisions_and_commands(tmp_path):
    store = make_store(tmp_path)
    assert store.decision("a") is None
    store.decide("a", "approve", by="cli:me", note="looks fine")
    assert store.decision("a")["decision"] == "approve" and store.decision("a")["note"] == "looks fine"
    store.command("stop")
    assert store.take_commands() == ["stop"] and store.take_commands() == []
    store.close()


WRITER = """
import sys, time
from core.store import RunStore
store = RunStore(sys.argv[1], flush_s=0.05)
for step in range(1, 3001):
    store.append_metrics("a", step, {"loss": 1.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5})
    if step % 100 == 0:
        time.sleep(0.01)
store.close()
"""


def test_concurrent_reader_while_another_process_writes(tmp_path):
    store = make_store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path)])
    last_id, seen, reads_during_write, slowest = 0, 0, 0, 0.0
    while True:
        running = proc.poll() is None
        t0 = time.perf_counter()
        batch = store.events(after_id=last_id, kinds=["metric"])
        slowest = max(slowest, time.perf_counter() - t0)
        if batch:
            last_id, seen = batch[-1].id, seen + len(batch)
        reads_during_write += running
        if not running and not batch:
            break
    assert proc.wait() == 0
    assert seen == 9000
    assert reads_during_write > 3, "the reader should have read while the writer was writing"
    assert slowest < 1.0, f"a read waited {slowest:.2f} s on the writer"
    store.close()
