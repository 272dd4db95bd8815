"""KPI maths: pure functions over the feed's state, so they are tested without Redis."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.ride_view import OPEN, Ride, reached_at

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Match:
    """One observed assignment: when the ride was requested and matched, and its pickup ETA."""

    ride_id: str
    requested_at: int
    matched_at: int
    pickup_eta_s: float | None

    @property
    def wait_s(self) -> float:
        return max(0, self.matched_at - self.requested_at) / 1000


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _quality(rides: Sequence[Ride]) -> tuple[float | None, float | None]:
    """(trip ETA MAE, mean pickup time) in seconds over the rides the feed still holds.

    Trip ETA error compares the ETA quoted at request with started → completed, over completed
    rides; pickup time is matched → driver arrived, over rides that got that far."""
    trip_errors: list[float] = []
    pickups: list[float] = []
    for ride in rides:
        if not ride.get("timeline"):  # nothing reached past the request yet
            continue
        matched, arrived = reached_at(ride, "matched"), reached_at(ride, "driver_arrived")
        if matched is not None and arrived is not None:
            pickups.append(max(0, arrived - matched) / 1000)
        started, completed = reached_at(ride, "started"), reached_at(ride, "completed")
        eta = ride.get("trip_eta_s")
        if started is not None and completed is not None and eta is not None:
            trip_errors.append(abs(eta - max(0, completed - started) / 1000))
    mae = sum(trip_errors) / len(trip_errors) if trip_errors else None
    mean_pickup = sum(pickups) / len(pickups) if pickups else None
    return mae, mean_pickup


def fulfilment_rate(ride_counts: Mapping[str, int]) -> float | None:
    """Completed share of finished rides (completed, cancelled, expired); None before any end."""
    ended = sum(ride_counts.get(s, 0) for s in ("completed", "cancelled", "expired"))
    return ride_counts.get("completed", 0) / ended if ended else None


def compute_kpis(
    *,
    driver_statuses: Mapping[str, int],
    rides: Iterable[Ride],
    ride_counts: Mapping[str, int],
    matches: Iterable[Match],
    surge: Iterable[float],
    dead_letters: int,
    now_ms: int,
) -> dict[str, Any]:
    """`driver_statuses` is status → number of drivers; `matches` the recent assignments."""
    recent = list(matches)
    rides_seen = list(rides)
    trip_eta_mae, pickup_mean = _quality(rides_seen)
    waits = [m.wait_s for m in recent]
    etas = [m.pickup_eta_s for m in recent if m.pickup_eta_s is not None]
    return {
        "drivers_online": sum(n for status, n in driver_statuses.items() if status != "offline"),
        "drivers_available": driver_statuses.get("available", 0),
        "open_requests": sum(1 for ride in rides_seen if ride["status"] in OPEN),
        "matched_last_min": sum(1 for m in recent if now_ms - m.matched_at <= MINUTE_MS),
        "ttm_p50_s": _rounded(percentile(waits, 0.5)),
        "ttm_p95_s": _rounded(percentile(waits, 0.95)),
        "pickup_eta_p50_s": _rounded(percentile(etas, 0.5), 0),
        "completed": ride_counts.get("completed", 0),
        "cancelled": ride_counts.get("cancelled", 0),
        "expired": ride_counts.get("expired", 0),
        "max_surge": round(max(surge, default=1.0), 2),
        "dead_letters": dead_letters,
        "trip_eta_mae_s": _rounded(trip_eta_mae, 0),
        "pickup_mean_s": _rounded(pickup_mean, 0),
        "fulfilment_rate": _rounded(fulfilment_rate(ride_counts), 3),
    }
