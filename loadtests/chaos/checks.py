"""The chaos suite's verdicts, as pure functions of what the clients saw and what the ride
stream holds: no I/O here, so each rule is unit-tested (tests/unit/test_chaos_checks.py)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TERMINAL_EVENTS = frozenset({"ride.completed", "ride.cancelled", "ride.expired"})


@dataclass(frozen=True, slots=True)
class RideEvent:
    """One ride-stream entry, reduced to what the checks need (in stream order)."""

    entry_id: str
    type: str
    ride_id: str
    driver_id: str | None = None
    rider_id: str | None = None
    reason: str | None = None

    @classmethod
    def from_data(cls, entry_id: str, kind: str, data: dict[str, Any]) -> RideEvent:
        return cls(
            entry_id,
            kind,
            str(data.get("ride_id", "")),
            data.get("driver_id"),
            data.get("rider_id"),
            data.get("reason"),
        )


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str
    examples: list[str] = field(default_factory=list)


def double_assignments(events: Sequence[RideEvent]) -> list[str]:
    """Drivers matched to a ride while still holding another (matched → terminal or unmatched)."""
    holding: dict[str, str] = {}  # driver → ride it holds
    driver_of: dict[str, str] = {}  # ride → driver holding it
    problems = []
    for event in events:
        if event.type == "ride.matched" and event.driver_id:
            held = holding.get(event.driver_id)
            if held is not None and held != event.ride_id:
                problems.append(
                    f"driver {event.driver_id} matched to {event.ride_id} at {event.entry_id} "
                    f"while holding {held}"
                )
            other = driver_of.get(event.ride_id)
            if other is not None and other != event.driver_id:
                problems.append(
                    f"ride {event.ride_id} matched to {event.driver_id} at {event.entry_id} "
                    f"while held by {other}"
                )
            holding[event.driver_id] = event.ride_id
            driver_of[event.ride_id] = event.driver_id
        elif event.type in TERMINAL_EVENTS or (
            event.type == "ride.unmatched" and event.reason == "driver_cancelled"
        ):
            driver = driver_of.pop(event.ride_id, None)
            if driver is not None and holding.get(driver) == event.ride_id:
                del holding[driver]
    return problems


def terminal_counts(events: Iterable[RideEvent]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if event.type in TERMINAL_EVENTS:
            counts[event.ride_id] += 1
    return counts


def rides_per_rider(events: Iterable[RideEvent]) -> dict[str, set[str]]:
    """Rider → ride ids of its ride.requested events (each chaos rider sends one key)."""
    rides: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.type == "ride.requested" and event.rider_id:
            rides[event.rider_id].add(event.ride_id)
    return rides


def longest_gap(times: Sequence[float], start: float, end: float) -> tuple[float, float]:
    """(longest stretch without a success inside [start, end], when it began)."""
    points = sorted(t for t in times if start <= t <= end)
    edges = [start, *points, end]
    best, at = 0.0, start
    for before, after in itertools.pairwise(edges):
        if after - before > best:
            best, at = after - before, before
    return best, at


def _verdict(name: str, problems: list[str], ok_detail: str) -> Verdict:
    if problems:
        return Verdict(name, False, f"{len(problems)} problem(s)", problems[:10])
    return Verdict(name, True, ok_detail)


def judge(
    *,
    acknowledged: dict[str, set[str]],
    unanswered: list[str],
    readable: dict[str, int],
    final_status: dict[str, str],
    events: Sequence[RideEvent],
    min_completed: float,
) -> list[Verdict]:
    """Every rule of the suite over one run.

    `acknowledged`: Idempotency-Key (= rider) → ride ids the API answered 202 with;
    `unanswered`: keys that never got an answer; `readable`: ride id → status code of its final
    GET; `final_status`: ride id → status read at the end; `events`: the ride stream in order."""
    rides = {r for ids in acknowledged.values() for r in ids}
    verdicts = [
        _verdict(
            "every ride request answered",
            [f"key {k} got no answer" for k in unanswered],
            f"{len(acknowledged)} keys answered",
        ),
        _verdict(
            "every acknowledged ride readable (0 lost)",
            [
                f"ride {r}: GET answered {readable.get(r)}"
                for r in sorted(rides)
                if readable.get(r) != 200
            ],
            f"{len(rides)} of {len(rides)} readable",
        ),
    ]
    per_rider = rides_per_rider(events)
    duplicates = [
        f"key {k}: API answered {sorted(ids)}, stream has {sorted(per_rider.get(k, set()))}"
        for k, ids in acknowledged.items()
        if len(ids) != 1 or len(per_rider.get(k, set()) | ids) != 1
    ]
    verdicts.append(_verdict("one ride per Idempotency-Key", duplicates, "1 ride per key"))
    verdicts.append(
        _verdict(
            "no driver on two rides at once",
            double_assignments(events),
            "matched→terminal intervals never overlap",
        )
    )
    counts = terminal_counts(events)
    wrong = [
        f"ride {r}: {counts.get(r, 0)} terminal events"
        for r in sorted(rides)
        if counts.get(r, 0) != 1
    ]
    verdicts.append(_verdict("exactly one terminal event per ride", wrong, "1 per ride"))
    completed = sum(1 for r in rides if final_status.get(r) == "completed")
    share = completed / len(rides) if rides else 0.0
    verdicts.append(
        Verdict(
            f"at least {min_completed:.0%} completed",
            share >= min_completed,
            f"{completed} of {len(rides)} completed ({share:.1%})",
        )
    )
    return verdicts
