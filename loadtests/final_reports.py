"""A distributed run's verdict waits for every worker's final report.

Locust's master fires test_stop before it tells the workers to quit, and then gives their last
reports 0.5 s: a worker's stop drain and stuck-ride check take seconds, so the master would judge
without them. Instead, at the master's test_stop the gate asks each worker to quit itself and
waits, bounded, until each has sent a report made after its own test_stop (the worker marks it).
"""

from __future__ import annotations

import time
from typing import Any

from locust.runners import MasterRunner

DRAINED_KEY = "ridepulse_drained"  # in a worker's report: its drain and ride check are in it
POLL_S = 0.2


class FinalReports:
    """Both ends of the handshake; the gate holds one per process."""

    def __init__(self) -> None:
        self.drained = False  # on a worker: this run's test_stop has finished
        self.drained_workers: set[str] = set()  # on the master

    def reset(self) -> None:
        self.drained = False
        self.drained_workers.clear()

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[DRAINED_KEY] = self.drained

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if data.get(DRAINED_KEY):
            self.drained_workers.add(client_id)

    def await_workers(self, runner: MasterRunner, timeout_s: float) -> list[str]:
        """Ask every connected worker to quit (it stops its users, checks its rides, sends a final
        report) and wait for those reports; the ids of workers that sent none in time."""
        expected = {client.id for client in runner.clients.all} - self.drained_workers
        for client_id in expected:
            # the message locust's own MasterRunner.quit sends, only sooner
            runner.send_message("quit", client_id=client_id)
        deadline = time.monotonic() + timeout_s
        while expected - self.drained_workers and time.monotonic() < deadline:
            time.sleep(POLL_S)  # gevent-patched: the master keeps receiving meanwhile
        return sorted(expected - self.drained_workers)
