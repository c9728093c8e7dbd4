"""Which checkpoints can be trusted: complete ones whose files still match the manifest written last.

A published checkpoint carries `cockpit-manifest.json`, written after every other file: each file's
relative name, size and a cheap fingerprint (sha256 of its first and last 64 KiB). Verifying reads at
most 128 KiB per file, plus each safetensors header, whose declared data end must equal the file size.
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# A Trainer checkpoint writes trainer_state.json last; our workers rename it into place after that.
COMPLETE_MARKER = "trainer_state.json"
MANIFEST = "cockpit-manifest.json"
NO_MANIFEST = "no manifest"
SAMPLE = 64 * 1024
MAX_HEADER = 100 * 1024 * 1024  # a safetensors header longer than this is garbage


def write_manifest(folder: Path) -> None:
    """Record every file of a finished checkpoint; call it last, before the folder is published."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        size = path.stat().st_size
        files[path.relative_to(folder).as_posix()] = {"size": size, "sample": _fingerprint(path, size)}
    (folder / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1))


def verify_checkpoint(folder: Path) -> str | None:
    """None when every file matches the manifest, else a short reason ("no manifest", "x is missing", ...)."""
    try:
        files = {name: (int(e["size"]), str(e["sample"]))
                 for name, e in json.loads((folder / MANIFEST).read_text())["files"].items()}
    except FileNotFoundError:
        return NO_MANIFEST
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "unreadable manifest"
    for name, (size, sample) in files.items():
        if reason := _verify_file(folder / name, name, size, sample):
            return reason
    return None


def resume_checkpoint(folder: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that verifies, and the newer ones skipped (newest first) with their reasons."""
    skipped = []
    for path in reversed(_numbered(folder)):
        reason = verify_checkpoint(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints one can load (chat), lowest step first: complete, and matching their manifest if they have one."""
    # Checkpoints written before manifests existed have none; they stay listed, but resume never trusts them.
    return [p for p in _numbered(folder)
            if (p / COMPLETE_MARKER).is_file() and verify_checkpoint(p) in (None, NO_MANIFEST)]


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a resume starts from: the newest that verifies, or None."""
    return resume_checkpoint(folder)[0]


def checkpoint_step(path: Path) -> int:
    """The step in a `checkpoint-<step>` folder's name."""
    return int(CHECKPOINT.match(path.name).group(1))


def _numbered(folder: Path) -> list[Path]:
    """`checkpoint-<step>` folders in `folder`, lowest step first."""
    if not folder.is_dir():
        return []
    found = [child for child in folder.iterdir() if CHECKPOINT.match(child.name) and child.is_dir()]
    return sorted(found, key=checkpoint_step)


def _verify_file(path: Path, name: str, size: int, sample: str) -> str | None:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return f"{name} is missing"
    if actual != size:
        return (f"{name} truncated ({actual:,} bytes, manifest says {size:,})" if actual < size
                else f"{name} is {actual:,} bytes, manifest says {size:,}")
    try:
        if _fingerprint(path, size) != sample:
            return f"{name} changed (head or tail differs)"
        return _safetensors_problem(path, name, size) if name.endswith(".safetensors") else None
    except OSError as exc:
        return f"{name} is unreadable ({exc.strerror or exc})"


def _fingerprint(path: Path, size: int) -> str:
    """sha256 of the first and last 64 KiB (the whole file when it is smaller than 128 KiB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(SAMPLE))
        if size > SAMPLE:
            f.seek(max(SAMPLE, size - SAMPLE))
            digest.update(f.read(SAMPLE))
    return digest.hexdigest()


def _safetensors_problem(path: Path, name: str, size: int) -> str | None:
    """A safetensors file whose header does not parse, or whose tensors end anywhere but at the end of the file."""
    with path.open("rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < length <= min(MAX_HEADER, size - 8):
            return f"{name} has no valid safetensors header"
        try:
            header = json.loads(f.read(length))
            end = 8 + length + max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                                   default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"{name} has an unreadable safetensors header"
    if end > size:
        return f"{name} truncated (header declares {end:,} bytes, file is {size:,})"
    return None if end == size else f"{name} has {size - end:,} bytes past its tensors"
