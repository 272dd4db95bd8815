"""A knob's allowed range. Every number must also be finite: NaN passes no comparison, so
`interval <= 0` lets it through and a driver's pacing turns into a hot loop, and inf turns a
period into "once"."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds on one number; None = unbounded on that side."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it fits."""
        inside = math.isfinite(value)
        inside = inside and (self.ge is None or value >= self.ge)
        inside = inside and (self.gt is None or value > self.gt)
        inside = inside and (self.le is None or value <= self.le)
        inside = inside and (self.lt is None or value < self.lt)
        return None if inside else f"must be {self.describe()}"

    def describe(self) -> str:
        bounds = [
            f"{symbol} {_number(limit)}"
            for symbol, limit in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if limit is not None
        ]
        return "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def _number(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


PROBABILITY = Range(ge=0, le=1)
PERIOD_S = Range(gt=0)  # a period of 0 is a hot loop
COUNT = Range(ge=0)
AT_LEAST_ONE = Range(ge=1)
ANY = Range()
