"""The capacity knee, pure: per-step rows from end-to-end results, and the highest telemetry rate
the platform sustains (issue 10: lag under 1 s and request→offered p99 under 100 ms at 100
rides/s, with no more than 1 % of the rides unoffered or of the pings shed, and the telemetry
taken at its pace). No I/O here, so the rule is unit-tested on its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_LAG_S = 1.0
MAX_OFFER_P99_MS = 100.0
# A ride never offered has no latency; past 1 % of them the p99 over all rides is unbounded.
MAX_UNOFFERED_SHARE = 0.01
# Shedding keeps lag and latency in bounds by not taking the load: a step that sheds more than
# this share of its pings is not sustained, whatever its lag.
MAX_SHED_SHARE = 0.01
# A ping that waits at ingest's door is as late as one waiting in the stream, and a door that
# answers late takes less than the rate offered: the telemetry requests' p99, timed from when
# each was due (not from when a free connection sent it), stays under the lag limit.
MAX_TELEMETRY_P99_MS = MAX_LAG_S * 1000


@dataclass(frozen=True)
class Step:
    """One offered load on one contender, reduced to what the sweep table shows."""

    offered_pings_per_s: int
    accepted_pings_per_s: float
    shed_pings_per_s: float  # telemetry answered 429
    conflated: int | None  # None: no service reported the field
    lag_s: float  # worst consumer group, age of its oldest undelivered entry
    telemetry_p99_ms: float | None  # from each request's due time to its answer
    offer_p50_ms: float | None
    offer_p99_ms: float | None
    offered_rides: int
    unoffered_rides: int
    cpu_cores: dict[str, float]

    @property
    def holds(self) -> bool:
        rides = self.offered_rides + self.unoffered_rides
        return (
            self.lag_s < MAX_LAG_S
            and self.telemetry_p99_ms is not None
            and self.telemetry_p99_ms < MAX_TELEMETRY_P99_MS
            and self.offer_p99_ms is not None
            and self.offer_p99_ms < MAX_OFFER_P99_MS
            and self.unoffered_rides <= MAX_UNOFFERED_SHARE * rides
            and self.shed_pings_per_s <= MAX_SHED_SHARE * self.offered_pings_per_s
        )


def step_from_e2e(level: dict[str, Any]) -> Step:
    """A Step from one result of `e2e.run_e2e`."""
    cfg, tel, offer = level["config"], level["telemetry"], level["offer_ms"]
    shed = tel["statuses"].get(429, tel["statuses"].get("429", 0))
    return Step(
        offered_pings_per_s=int(cfg["pings_per_s"]),
        accepted_pings_per_s=float(tel["accepted_per_s"]),
        shed_pings_per_s=shed * cfg["batch_pings"] / cfg["seconds"],
        conflated=level.get("conflated"),
        lag_s=max((g["max_seconds"] for g in level["lag"].values()), default=0.0),
        telemetry_p99_ms=tel.get("latency_ms_p99"),
        offer_p50_ms=offer["p50"],
        offer_p99_ms=offer["p99"],
        offered_rides=int(offer["count"]),
        unoffered_rides=int(offer["unoffered"]),
        cpu_cores=dict(level["cpu_cores"]),
    )


def knee(steps: Sequence[Step]) -> int | None:
    """The highest offered rate that holds, climbing from the lowest step and stopping at the
    first that does not (a lucky pass above a failure is noise, not capacity); None when even
    the lowest step fails."""
    best: int | None = None
    for step in sorted(steps, key=lambda s: s.offered_pings_per_s):
        if not step.holds:
            break
        best = step.offered_pings_per_s
    return best
