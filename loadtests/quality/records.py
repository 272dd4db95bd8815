"""One row per ride of a quality run, and the CSV round trip for it.

Times are epoch milliseconds (None when the ride never reached that step; `offered_ms` is its
first offer, taken or not, from the rides stream); ETAs and actual
durations are seconds. `*_pred_s` is RidePulse's learned ETA at request time, `*_base_s` the
straight-line-at-constant-speed baseline for the same ride, `*_actual_s` the simulation's truth."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RideRecord:
    ride_id: str
    requested_ms: int
    deadline_ms: int
    offered_ms: int | None = None
    matched_ms: int | None = None
    arrived_ms: int | None = None
    completed_ms: int | None = None
    pickup_pred_s: float | None = None
    trip_pred_s: float | None = None
    pickup_base_s: float | None = None
    trip_base_s: float | None = None
    fare: float | None = None
    surge: float | None = None

    @property
    def pickup_actual_s(self) -> float | None:
        """Matched → driver at the pickup point."""
        if self.matched_ms is None or self.arrived_ms is None:
            return None
        return (self.arrived_ms - self.matched_ms) / 1000

    @property
    def trip_actual_s(self) -> float | None:
        """Driver at pickup → drop-off (the trip itself)."""
        if self.arrived_ms is None or self.completed_ms is None:
            return None
        return (self.completed_ms - self.arrived_ms) / 1000

    @property
    def fulfilled(self) -> bool:
        """A driver accepted the ride before the rider's deadline. Completion is not required:
        a quality run ends about a minute after its last request, before the last trips end,
        and a trip's length says nothing about dispatch."""
        return self.matched_ms is not None and self.matched_ms <= self.deadline_ms


def consistency_errors(record: RideRecord) -> list[str]:
    """What is wrong with a record: steps out of order, or a later step without an earlier one."""
    problems: list[str] = []
    steps = [
        ("requested", record.requested_ms),
        ("offered", record.offered_ms),
        ("matched", record.matched_ms),
        ("arrived", record.arrived_ms),
        ("completed", record.completed_ms),
    ]
    previous_name, previous = steps[0]
    for name, value in steps[1:]:
        if value is None:
            previous_name, previous = name, None
            continue
        if previous is None:
            problems.append(f"{name} without {previous_name}")
        elif value < previous:
            problems.append(f"{name} before {previous_name}")
        previous_name, previous = name, value
    if record.completed_ms is not None and (record.fare is None or record.fare < 0):
        problems.append("completed without a fare")
    if record.surge is not None and record.surge < 1.0:
        problems.append("surge below 1.0")
    return problems


_COLUMNS = [f.name for f in fields(RideRecord)]
_INTS = {"requested_ms", "deadline_ms", "offered_ms", "matched_ms", "arrived_ms", "completed_ms"}


def write_csv(path: Path, records: Iterable[RideRecord]) -> None:
    """Stored fields plus the derived actuals and fulfilment, so the CSV is usable on its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*_COLUMNS, "pickup_actual_s", "trip_actual_s", "fulfilled"])
        for r in records:
            row = asdict(r)
            writer.writerow(
                [
                    *("" if row[c] is None else row[c] for c in _COLUMNS),
                    "" if r.pickup_actual_s is None else r.pickup_actual_s,
                    "" if r.trip_actual_s is None else r.trip_actual_s,
                    int(r.fulfilled),
                ]
            )


def read_csv(path: Path) -> list[RideRecord]:
    records: list[RideRecord] = []
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            values: dict[str, object] = {}
            for column in _COLUMNS:
                raw = row[column]
                if column == "ride_id":
                    values[column] = raw
                elif raw == "":
                    values[column] = None
                elif column in _INTS:
                    values[column] = int(raw)
                else:
                    values[column] = float(raw)
            records.append(RideRecord(**values))  # type: ignore[arg-type]
    return records
