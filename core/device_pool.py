"""How stages that run at once (`parallel: N`) share this machine: each local stage takes GPUs of its own
(as many as its processes, CUDA_VISIBLE_DEVICES), or on a CPU machine its share of the cores. The GPUs are
those the supervisor may use: its own CUDA_VISIBLE_DEVICES where that is set, else every one NVML sees.

A stage that needs more GPUs than the machine has takes them all (it then runs alone); stages that run
on a cluster or a cloud (Slurm, SkyPilot) take nothing here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.config import StageSpec


@dataclass(frozen=True)
class Allotment:
    """What one running stage holds: GPU indices (None: no GPU restriction) and torch threads per process
    (None: the stage's own setting)."""

    gpus: tuple[str, ...] | None = None
    threads: int | None = None


class DevicePool:
    """The GPUs and cores of this machine, handed to stages as they start and taken back as they end."""

    def __init__(self, gpus: list[str], cores: int, parallel: int):
        self.gpus, self.free = list(gpus), list(gpus)
        self.cores_each = max(1, cores // parallel)

    def take(self, stage: StageSpec) -> Allotment | None:
        """The stage's allotment, or None while the GPUs it needs are held by others."""
        if stage.launch.via != "local":
            return Allotment()
        threads = stage.train.threads or max(1, self.cores_each // stage.train.nproc)
        if not self.gpus:
            return Allotment(threads=threads)
        need = min(stage.train.nproc, len(self.gpus))
        if len(self.free) < need:
            return None
        taken, self.free = tuple(self.free[:need]), self.free[need:]
        return Allotment(taken, threads)

    def give_back(self, allotment: Allotment) -> None:
        self.free = [g for g in self.gpus if g in self.free or g in (allotment.gpus or ())]


def visible_gpus(count: int) -> list[str]:
    """The GPUs this process may hand out: its CUDA_VISIBLE_DEVICES (indices or UUIDs) where set, else all
    `count` NVML sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [g.strip() for g in visible.split(",") if g.strip()]
