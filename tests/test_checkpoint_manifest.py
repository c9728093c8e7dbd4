"""Checkpoint manifests: a damaged checkpoint is named and skipped, and resume falls back to an older one."""
import json
import struct
from pathlib import Path

import pytest

from test_faults import cockpit, config, events, the_run

pytestmark = pytest.mark.faults
DATA_BYTES = 300_000  # more than the head and tail samples together, so a middle exists


def safetensors_bytes(data_bytes: int = DATA_BYTES) -> bytes:
    """A valid safetensors file: one uint8 tensor of `data_bytes` bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [data_bytes], "data_offsets": [0, data_bytes]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(i % 251 for i in range(data_bytes))


def fake_checkpoint(folder: Path, step: int, manifest=True) -> Path:
    from core.checkpoints import write_manifest

    path = folder / f"checkpoint-{step}"
    (path / "sub").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(safetensors_bytes())
    (path / "sub" / "optimizer.pt").write_bytes(bytes(range(256)) * 1000)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if manifest:
        write_manifest(path)
    return path


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_checkpoint_with_its_manifest_verifies(tmp_path):
    from core.checkpoints import MANIFEST, verify_checkpoint

    ckpt = fake_checkpoint(tmp_path, 10)
    assert verify_checkpoint(ckpt) is None
    listed = json.loads((ckpt / MANIFEST).read_text())["files"]
    assert set(listed) == {"model.safetensors", "sub/optimizer.pt", "trainer_state.json"}


@pytest.mark.parametrize("damage, reason", [
    (lambda c: (c / "model.safetensors").write_bytes(safetensors_bytes()[:1024]),
     f"model.safetensors truncated (1,024 bytes, manifest says {len(safetensors_bytes()):,})"),
    (lambda c: (c / "model.safetensors").write_bytes(safetensors_bytes() + b"x"),
     f"model.safetensors is {len(safetensors_bytes()) + 1:,} bytes, manifest says {len(safetensors_bytes()):,}"),
    (lambda c: flip_byte(c / "sub" / "optimizer.pt", 100), "sub/optimizer.pt changed (head or tail differs)"),
    (lambda c: flip_byte(c / "model.safetensors", -1), "model.safetensors changed (head or tail differs)"),
    (lambda c: (c / "sub" / "optimizer.pt").unlink(), "sub/optimizer.pt is missing"),
    (lambda c: (c / "cockpit-manifest.json").unlink(), "no manifest"),
    (lambda c: (c / "cockpit-manifest.json").write_text("{"), "unreadable manifest"),
    (lambda c: (c / "cockpit-manifest.json").write_text('{"files": [1]}'), "unreadable manifest"),
], ids=["truncated", "grown", "head-changed", "tail-changed", "deleted", "no-manifest", "bad-json", "bad-shape"])
def test_each_kind_of_damage_gives_a_reason(tmp_path, damage, reason):
    from core.checkpoints import verify_checkpoint

    ckpt = fake_checkpoint(tmp_path, 10)
    damage(ckpt)
    assert verify_checkpoint(ckpt) == reason


def test_a_safetensors_file_already_short_when_the_manifest_was_written_is_caught(tmp_path):
    from core.checkpoints import verify_checkpoint, write_manifest

    ckpt = fake_checkpoint(tmp_path, 10, manifest=False)
    (ckpt / "model.safetensors").write_bytes(safetensors_bytes()[:-10])
    write_manifest(ckpt)
    assert verify_checkpoint(ckpt) == (f"model.safetensors truncated (header declares {len(safetensors_bytes()):,} "
                                       f"bytes, file is {len(safetensors_bytes()) - 10:,})")


def test_resume_takes_the_newest_checkpoint_that_verifies_and_names_the_others(tmp_path):
    from core.checkpoints import complete_checkpoints, resume_checkpoint

    older, _, newest = (fake_checkpoint(tmp_path, s) for s in (10, 20, 30))
    (tmp_path / "checkpoint-20" / "model.safetensors").write_bytes(b"short")
    (newest / "cockpit-manifest.json").unlink()
    chosen, skipped = resume_checkpoint(tmp_path)
    assert chosen == older
    assert [(p.name, why.split(" (")[0]) for p, why in skipped] == [
        ("checkpoint-30", "no manifest"), ("checkpoint-20", "model.safetensors truncated")]
    assert complete_checkpoints(tmp_path) == [older, newest]  # chat lists checkpoints written before manifests
    assert resume_checkpoint(tmp_path / "nothing") == (None, [])


def test_resume_skips_a_truncated_newest_checkpoint_and_continues_from_the_one_before(tmp_path):
    runs = tmp_path / "runs"
    failed = cockpit("run", str(config(tmp_path, steps=20, save=5)), "--batch", runs=runs,
                     env={"COCKPIT_FAULT_DISK_FULL_AT_STEP": "15"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    run = the_run(runs)
    checkpoints = run / "stages" / "pretrain" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    weights = checkpoints / "checkpoint-10" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1024])

    resumed = cockpit("resume", "latest", "--batch", runs=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "! pretrain: skipped checkpoint step 10: model.safetensors truncated (1,024 bytes" in resumed.stdout
    (skipped,) = events(run, "checkpoint_skipped")
    assert (skipped.step, skipped.data["path"]) == (10, str(checkpoints / "checkpoint-10"))
    assert skipped.data["reason"].startswith("model.safetensors truncated")
    assert events(run, "resumed")[-1].data["from_checkpoint"] == str(checkpoints / "checkpoint-5")
    assert sorted(e.step for e in events(run, "metric", stage="pretrain") if e.name == "loss") == \
        list(range(1, 21))
    assert (run / "stages" / "pretrain" / "final" / "model.safetensors").is_file()
