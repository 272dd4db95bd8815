"""The CSV and HTML reports written once more when the run is judged, so they agree with the
console.

Locust's CSV writer rewrites its files every second and never at close, so its last rows can
predate the stop drain and the stuck-ride samples. Its HTML report is written after the drain
at the end of a `-t` run, before it on Ctrl-C (locust saves the report, then fires the quitting
hook in which the gate stops the users: gate.py), and not at all on SIGTERM. Each file is
replaced whole (a temporary file renamed over it): locust's CSV writer still holds the old file
open, and whatever it writes or flushes later lands in that unlinked file, not over these rows.
"""

from __future__ import annotations

import contextlib
import csv
import os
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from locust.env import Environment
from locust.html import get_html_report, process_html_filename
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
        with _replacing(Path(prefix + suffix)) as handle:
            write(csv.writer(handle))


def write_final_html(environment: Environment, options: Namespace) -> None:
    """The `--html` report from the final stats. On SIGTERM locust writes none at all."""
    process_html_filename(options)  # `{u}`, `{r}`, `{t}` in the name, as locust does
    render: Callable[..., str] = get_html_report  # locust's report is untyped
    report = render(environment, show_download_link=False)
    with _replacing(Path(options.html_file)) as handle:
        handle.write(report)


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[TextIO]:
    """A file written beside `target` and renamed over it once complete."""
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            yield handle
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
