"""How noisy the machine was: CPU used by processes outside this run's process tree.

busy CPU of the whole machine (/proc/stat) minus the CPU of this process and every descendant
(live ones via psutil, exited ones via the children times their parents collected)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil


def machine_busy_s() -> float:
    t = psutil.cpu_times()  # the first line of /proc/stat
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def tree_cpu_s() -> float:
    mine = os.times()
    total = mine.user + mine.system + mine.children_user + mine.children_system
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass
class CpuAccount:
    """Snapshot at start; `foreign_cores()` = average cores others used since then."""

    wall: float
    busy: float
    ours: float

    @classmethod
    def start(cls) -> CpuAccount:
        return cls(time.monotonic(), machine_busy_s(), tree_cpu_s())

    def foreign_cores(self) -> float:
        wall = time.monotonic() - self.wall
        foreign = (machine_busy_s() - self.busy) - (tree_cpu_s() - self.ours)
        return max(0.0, foreign / wall) if wall > 0 else 0.0

    def our_cores(self) -> float:
        wall = time.monotonic() - self.wall
        return (tree_cpu_s() - self.ours) / wall if wall > 0 else 0.0
