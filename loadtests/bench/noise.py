"""How noisy the machine was: CPU used by processes outside this run's process tree.

busy CPU of the whole machine (/proc/stat) minus the CPU of this process and every descendant
(live ones via psutil, exited ones via the children times their parents collected)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

USER_HZ = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / USER_HZ


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
        if wall <= 0:
            return 0.0
        foreign = (machine_busy_s() - self.busy) - (tree_cpu_s() - self.ours)
        return max(0.0, foreign / wall)

    def our_cores(self) -> float:
        wall = time.monotonic() - self.wall
        return (tree_cpu_s() - self.ours) / wall if wall > 0 else 0.0
