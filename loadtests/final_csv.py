"""The CSV reports written once more when the run is judged, so they agree with the console.

Locust's CSV writer rewrites its files every second and never at close, so its last rows can
predate the stop drain and the stuck-ride samples. Each file is replaced whole (a temporary file
renamed over it): locust's writer still holds the old file open, and whatever it writes or flushes
later lands in that unlinked file, not over these rows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, CSVWriter, StatsCSV


def write_final_csv(environment: Environment, prefix: str) -> None:
    """`<prefix>_stats.csv`, `_failures.csv` and `_exceptions.csv` from the final stats."""
    report = StatsCSV(environment, PERCENTILES_TO_REPORT)
    writers: dict[str, Callable[[CSVWriter], None]] = {
        "_stats.csv": report.requests_csv,
        "_failures.csv": report.failures_csv,
        "_exceptions.csv": report.exceptions_csv,
    }
    for suffix, write in writers.items():
        target = Path(prefix + suffix)
        partial = target.with_name(target.name + ".partial")
        with partial.open("w", newline="") as handle:
            write(csv.writer(handle))
        os.replace(partial, target)
