"""User data in the shapes the seeds use: Parquet files and renamed columns ({instruction, output})."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config_load import load_curriculum
from core.errors import ConfigError

ROWS = [{"instruction": f"What is {a}+{b}?", "output": f"{a}+{b}={a + b}"} for a in range(9) for b in range(9)]


def seed_002_file(tmp_path):
    path = tmp_path / "domain.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def config(tmp_path, data: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\nstages:\n  - name: sft\n    kind: sft\n    data: {data}\n")
    return path


def test_parquet_rows_are_read_and_columns_renamed_at_load(tmp_path):
    seed_002_file(tmp_path)
    cur = load_curriculum(config(tmp_path, "{source: domain.parquet, columns: {instruction: prompt, "
                                           "output: completion}}"))
    assert cur.stages[0].data.columns == {"instruction": "prompt", "output": "completion"}
    with pytest.raises(ConfigError, match=r"domain.parquet:1: stages.0.data: row lacks field 'messages' or 'prompt'"):
        load_curriculum(config(tmp_path, "domain.parquet"))


def test_an_unreadable_parquet_file_is_a_config_error(tmp_path):
    (tmp_path / "domain.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read data file"):
        load_curriculum(config(tmp_path, "domain.parquet"))


def test_sft_trains_on_renamed_parquet_rows(worker_run, tmp_path):
    source = seed_002_file(tmp_path)
    data = {"source": str(source), "columns": {"instruction": "prompt", "output": "completion"}}
    done = worker_run.run("sft", worker_run.spec("sft", "sft", data=data, lora={"r": 4}))
    assert done.returncode == 0, done.stderr[-2000:]
    with worker_run.store() as store:
        losses = [e.value for e in store.events(kinds=["metric"], stage="sft") if e.name == "loss"]
    assert len(losses) == 4
