"""Repetitions of one figure's measurement, and the run's progress as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtests.bench.stats import median, spread


def say(message: str) -> None:
    print(message, flush=True)  # flushed: a long run is watched as it goes


@dataclass
class Measure:
    """All repetitions of one contender in one figure (e.g. ingest's req/s)."""

    label: str
    unit: str
    reps: list[float] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    def add(self, value: float, **detail: Any) -> None:
        self.reps.append(value)
        self.details.append(detail)

    @property
    def median(self) -> float:
        return median(self.reps) if self.reps else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "reps": self.reps,
            "spread": spread(self.reps) if self.reps else None,
            "details": self.details,
        }
