"""The fare function and the quote record, shared by pricing (which quotes) and ingest (which
checks a quote when a ride is requested), so both compute the same price to the cent."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import ROUND_HALF_UP, Decimal

from ridepulse.contracts.events import Point
from ridepulse.geo import haversine_m
from ridepulse.replies import text
from ridepulse.travel import DETOUR_FACTOR


@dataclass(frozen=True, slots=True)
class FareTable:
    """Prices in USD, in the range of a US big-city economy ride (2024–25 rate cards)."""

    base_usd: float = 2.50
    per_km_usd: float = 1.05  # about $1.69 a mile
    per_min_usd: float = 0.35
    minimum_usd: float = 7.50
    booking_fee_usd: float = 2.75

    def fare(self, distance_m: float, duration_s: float, surge: float) -> float:
        """The rider's price in USD for a trip of ``distance_m`` by road, rounded half-up to the
        cent.

        Surge multiplies the metered part (base, distance, time — never less than the minimum);
        the booking fee is flat because it pays for costs that do not grow with demand.
        """
        if not (distance_m >= 0 and duration_s >= 0 and math.isfinite(distance_m + duration_s)):
            raise ValueError(
                f"distance_m and duration_s must be finite and >= 0, got {distance_m}, {duration_s}"
            )
        if not (surge >= 1.0 and math.isfinite(surge)):
            raise ValueError(f"surge must be a finite multiplier >= 1.0, got {surge}")
        metered = (
            self.base_usd + self.per_km_usd * distance_m / 1000 + self.per_min_usd * duration_s / 60
        )
        total = max(metered, self.minimum_usd) * surge + self.booking_fee_usd
        # Decimal from the float's shortest repr: round(2.675, 2) on the binary float gives 2.67.
        return float(Decimal(repr(total)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


DEFAULT_FARES = FareTable()


def fare(
    distance_m: float, duration_s: float, surge: float, table: FareTable = DEFAULT_FARES
) -> float:
    """``table.fare(...)``, with the default rate card unless told otherwise."""
    return table.fare(distance_m, duration_s, surge)


def trip_fare(
    pickup: Point, dropoff: Point, duration_s: float, surge: float, table: FareTable = DEFAULT_FARES
) -> float:
    """A trip's fare without a quote: the straight line × DETOUR_FACTOR (as quotes and ETAs
    estimate the road), and the trip's measured duration."""
    distance_m = haversine_m(pickup.lat, pickup.lon, dropoff.lat, dropoff.lon) * DETOUR_FACTOR
    return table.fare(distance_m, duration_s, surge)


@dataclass(frozen=True, slots=True)
class Quote:
    """A price promised to a rider until ``expires_at`` (epoch ms), stored as a Redis hash.

    ``pickup_eta_s`` is the ETA of the driver an offer would go to now (ingest/quotes.py), None
    when no driver is free within matching's widest search.
    """

    quote_id: str
    fare: float
    surge: float
    pickup_eta_s: float | None
    trip_eta_s: float
    distance_m: float
    expires_at: int

    def to_dict(self) -> dict[str, str]:
        """Every field as a string — the mapping HSET takes and HGETALL gives back; None is left
        out."""
        return {name: str(value) for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object] | Mapping[bytes, object]) -> Quote:
        """Parse a hash as HGETALL returns it (str or bytes, decoded or not) or a plain dict."""
        values = {text(k): text(v) for k, v in raw.items()}
        missing = [f.name for f in fields(cls) if f.name not in values and f.name != "pickup_eta_s"]
        if missing:
            raise ValueError(f"quote is missing {', '.join(missing)}")
        try:
            return cls(
                quote_id=values["quote_id"],
                fare=float(values["fare"]),
                surge=float(values["surge"]),
                pickup_eta_s=float(values["pickup_eta_s"]) if "pickup_eta_s" in values else None,
                trip_eta_s=float(values["trip_eta_s"]),
                distance_m=float(values["distance_m"]),
                expires_at=int(values["expires_at"]),
            )
        except ValueError as exc:
            raise ValueError(f"quote has a malformed field: {exc}") from exc
