"""Repetitions of one figure's measurement, taken in turn with its peers' (ABAB), and the run's
progress as it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
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


Rep = Callable[[], tuple[float, dict[str, Any]]]  # one repetition: its rate, details beside it


def in_new_loop(make: Callable[[], Coroutine[Any, Any, tuple[float, dict[str, Any]]]]) -> Rep:
    """A repetition that is a coroutine, run in an event loop of its own each time."""
    return lambda: asyncio.run(make())


def interleave(
    contenders: list[tuple[Measure, Rep]], reps: int, after: Callable[[], object] = lambda: None
) -> None:
    """`reps` rounds of one repetition per contender, the order rotating each round (ABAB for
    two) so that the machine's drift falls on all of them alike; `after` follows each one."""
    for rep in range(reps):
        turn = rep % len(contenders)
        for measure, run in contenders[turn:] + contenders[:turn]:
            rate, detail = run()
            measure.add(rate, **detail)
            after()
            brief = ", ".join(f"{k} {v:.4g}" for k, v in detail.items())
            say(
                f"  rep {rep + 1}/{reps} {measure.label:>18}: {rate:10.0f}"
                + (f" ({brief})" if brief else "")
            )


def old_against_new(
    label: str, unit: str, old: Rep, new: Rep, reps: int
) -> tuple[Measure, Measure]:
    """A change measured against what it replaced, interleaved: the micro-measurements' shape."""
    measures = Measure(f"{label} old".lstrip(), unit), Measure(f"{label} new".lstrip(), unit)
    interleave([(measures[0], old), (measures[1], new)], reps)
    return measures
