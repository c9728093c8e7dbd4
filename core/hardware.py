"""Hardware samples for a worker's process tree: NVML per GPU when present, psutil always."""
from __future__ import annotations

import psutil

from core.events import GpuSample, HardwareData


class HardwareSampler:
    """Samples GPU memory/utilisation and the RSS/CPU of one process tree. No GPU is normal."""

    def __init__(self) -> None:
        self._nvml = _init_nvml()
        self._procs: dict[int, psutil.Process] = {}

    @property
    def has_gpu(self) -> bool:
        return bool(self._nvml)

    @property
    def gpu_count(self) -> int:
        return len(self._nvml or ())

    def sample(self, root_pid: int | None) -> HardwareData:
        """One sample: the `hardware` event's data."""
        rss, cpu, procs = self._tree_usage(root_pid)
        return {"gpus": self._gpu_usage(), "rss": rss, "cpu": cpu, "procs": procs}

    def _tree_usage(self, root_pid: int | None) -> tuple[int, float, int]:
        if root_pid is None:
            return 0, 0.0, 0
        try:
            root = self._cached(root_pid)
            tree = [root] + [self._cached(c.pid) for c in root.children(recursive=True)]
        except psutil.Error:
            return 0, 0.0, 0
        rss, cpu = 0, 0.0
        for proc in tree:
            try:
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
            except psutil.Error:
                continue
        self._procs = {p.pid: p for p in tree}
        return rss, round(cpu, 1), len(tree)

    def _cached(self, pid: int) -> psutil.Process:
        """Reuse Process objects so cpu_percent measures since the previous sample."""
        proc = self._procs.get(pid)
        if proc is None:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
        return proc

    def _gpu_usage(self) -> list[GpuSample]:
        if not self._nvml:
            return []
        import pynvml
        out = []
        for index, handle in enumerate(self._nvml):
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                out.append({"index": index, "name": _gpu_name(handle), "mem_used": mem.used,
                            "mem_total": mem.total, "util": util.gpu})
            except pynvml.NVMLError:
                continue
        return out


def _init_nvml() -> list:
    try:
        import pynvml
        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no driver, no library, no device: all mean "no GPU here"
        return []


def _gpu_name(handle) -> str:
    import pynvml
    name = pynvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else name
