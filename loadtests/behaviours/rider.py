"""Following one ride from the rider's side: when to cancel, and which metrics it has earned.

The ride resource's timeline gives server-side transition times, so time-to-match and pickup wait
are exact even though the rider only polls every couple of seconds; without a timeline entry the
rider falls back to when it saw the status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loadtests.behaviours.ledger import TERMINAL_STATUSES

# How far along the lifecycle each status is: reaching a later one implies the earlier happened.
PROGRESS = {
    "requested": 0,
    "offered": 1,
    "matched": 2,
    "driver_arrived": 3,
    "started": 4,
    "completed": 5,
}
CANCELLABLE = frozenset({"requested", "offered", "matched"})
MILESTONES = (("time_to_match", "matched"), ("pickup_wait", "driver_arrived"))


@dataclass(frozen=True, slots=True)
class RideMetric:
    """One custom locust sample: name and milliseconds."""

    name: str
    ms: float


def parse_instant_ms(value: Any) -> int | None:
    """A timeline `at`: epoch ms, epoch seconds, or RFC 3339 text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value if value > 1e11 else value * 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def timeline_ms(ride: dict[str, Any], status: str) -> int | None:
    """When the ride first entered `status`, from its timeline."""
    for entry in ride.get("timeline") or []:
        if isinstance(entry, dict) and entry.get("status") == status:
            return parse_instant_ms(entry.get("at"))
    return None


@dataclass
class RideWatch:
    ride_id: str
    requested_ms: int
    cancel_at_ms: int | None = None
    reported: set[str] = field(default_factory=set)
    status: str = "requested"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def should_cancel(self, now_ms: int) -> bool:
        """Patience ran out while still waiting for (or on the way to meeting) a driver."""
        return (
            self.cancel_at_ms is not None
            and now_ms >= self.cancel_at_ms
            and self.status in CANCELLABLE
        )

    def observe(self, ride: dict[str, Any], now_ms: int) -> list[RideMetric]:
        """Take in a fresh ride resource; return the metrics it newly makes known."""
        status = ride.get("status")
        if isinstance(status, str):
            self.status = status
        start = timeline_ms(ride, "requested") or self.requested_ms
        metrics = []
        for name, milestone in MILESTONES:
            if name in self.reported:
                continue
            at = timeline_ms(ride, milestone)
            if at is None and PROGRESS.get(self.status, -1) >= PROGRESS[milestone]:
                at = now_ms
            if at is not None:
                self.reported.add(name)
                metrics.append(RideMetric(name, max(0, at - start)))
        if self.terminal and "outcome" not in self.reported:
            self.reported.add("outcome")
            end = timeline_ms(ride, self.status) or now_ms
            metrics.append(RideMetric(f"outcome:{self.status}", max(0, end - start)))
        return metrics
