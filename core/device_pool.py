"""How stages that run at once (`parallel: N`) share this machine: each local stage takes GPUs of its own
(as many as its processes, CUDA_VISIBLE_DEVICES), or on a CPU machine its share of the cores.

A stage that needs more GPUs than the machine has takes them all (it then runs alone); stages that run
on a cluster or a cloud (Slurm, SkyPilot) take nothing here.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.config import StageSpec


@dataclass(frozen=True)
class Allotment:
    """What one running stage holds: GPU indices (None: no GPU restriction) and torch threads per process
    (None: the stage's own setting)."""

    gpus: tuple[int, ...] | None = None
    threads: int | None = None


class DevicePool:
    """The GPUs and cores of this machine, handed to stages as they start and taken back as they end."""

    def __init__(self, gpus: int, cores: int, parallel: int):
        self.free = list(range(gpus))
        self.gpus = gpus
        self.cores_each = max(1, cores // parallel)

    def take(self, stage: StageSpec) -> Allotment | None:
        """The stage's allotment, or None while the GPUs it needs are held by others."""
        if stage.launch.via != "local":
            return Allotment()
        threads = stage.train.threads or max(1, self.cores_each // stage.train.nproc)
        if not self.gpus:
            return Allotment(threads=threads)
        need = min(stage.train.nproc, self.gpus)
        if len(self.free) < need:
            return None
        taken, self.free = tuple(self.free[:need]), self.free[need:]
        return Allotment(taken, threads)

    def give_back(self, allotment: Allotment) -> None:
        self.free = sorted(self.free + list(allotment.gpus or ()))
