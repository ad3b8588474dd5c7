"""The machine a run is measured on: the hardware in words, and memory read one way everywhere.

Peak memory of a process is its `VmHWM` (peak resident set, reset through `/proc/<pid>/clear_refs`), not
`ru_maxrss`, which a spawned process inherits from its parent. Memory a tree of forked processes holds is the sum of
their `Pss_Anon` (proportional anonymous memory), so that pages they share count once.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from pathlib import Path
from typing import Callable

import torch


def hardware_description() -> str:
    """CPU model and core count, plus the GPU name when CUDA is used."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    text = f"{cpu}, {os.cpu_count()} cores"
    return text + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")


def clock(device: torch.device) -> float:
    """Seconds on a monotonic clock, once the work queued on `device` is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def status_kb(field: str, pid: int | str = "self") -> int:
    """A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`, `RssAnon`, ...)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: `VmHWM` (`ru_maxrss` where there is no /proc)."""
    if Path("/proc/self/status").exists():
        return status_kb("VmHWM") / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if platform.system() == "Linux" else 2**20)


def reset_peak_rss() -> None:
    """Start `peak_rss_mb` again from the current resident memory (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb() -> float:
    """Peak resident memory of this process, plus peak allocated CUDA memory when CUDA is used, in MB."""
    peak = peak_rss_mb()
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak


def process_tree(pid: int | None = None) -> list[int]:
    """`pid` (default: this process) and all its descendants alive now."""
    pids, index = [pid or os.getpid()], 0
    while index < len(pids):
        for children in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            try:
                pids += [int(child) for child in children.read_text().split()]
            except OSError:  # the task ended while we read
                pass
        index += 1
    return pids


def tree_pss_kb(pid: int | None = None, field: str = "Pss_Anon") -> int:
    """The sum of `field` (from `smaps_rollup`) over the process tree of `pid`, in kB: shared pages count once."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as rollup:
                total += next((int(line.split()[1]) for line in rollup if line.startswith(field + ":")), 0)
        except OSError:  # the process ended while we read
            pass
    return total


class PeakSampler:
    """Reads `read()` (kB) every `interval` seconds in a daemon thread; `peak_mb` is the largest value seen.

    For memory that rises and falls within a phase (e.g. `tree_pss_kb` of a run whose children come and go), where
    no kernel high-water mark exists."""

    def __init__(self, read: Callable[[], int] = tree_pss_kb, interval: float = 0.002):
        self.read, self.interval = read, interval
        self.peak_kb = self.overall_kb = read()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, self.read())
            self.overall_kb = max(self.overall_kb, self.peak_kb)
            time.sleep(self.interval)

    @property
    def peak_mb(self) -> float:
        """The peak since the sampler started."""
        return max(self.overall_kb, self.read()) / 1024

    def take(self) -> float:
        """The peak of the current window (MB); the next window starts from the current value."""
        now = self.read()
        peak = max(self.peak_kb, now)
        self.peak_kb = now
        self.overall_kb = max(self.overall_kb, peak)
        return peak / 1024
