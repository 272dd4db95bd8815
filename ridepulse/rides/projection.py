"""Typed views of the ride and driver hashes that the step scripts write.

Hashes hold strings, with "" for absent values (so every field is always present for readers
such as the dashboard); these dataclasses turn them into typed, immutable snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ridepulse.contracts.events import Point
from ridepulse.replies import text
from ridepulse.rides.state import DRIVER_STATUSES, RIDE_STATUSES, DriverStatus, RideStatus

Fields = Mapping[str, str]


def decode_hash(raw: Mapping[bytes | str, bytes | str] | Sequence[bytes]) -> dict[str, str]:
    """HGETALL reply (a dict, or the flat list a script returns) → str dict."""
    if isinstance(raw, Mapping):
        return {text(k): text(v) for k, v in raw.items()}
    return {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw) - 1, 2)}


def _opt_str(value: str | None) -> str | None:
    return value or None


def _opt_float(value: str | None) -> float | None:
    return float(value) if value else None


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


@dataclass(frozen=True, slots=True)
class Ride:
    """One ride as of `version`; `timeline` is (status, epoch ms) along its current path."""

    ride_id: str
    rider_id: str
    market: str
    status: RideStatus
    version: int
    driver_id: str | None
    pickup: Point
    dropoff: Point
    requested_at: int
    deadline_at: int
    offer_driver_id: str | None
    offer_expires_at: int | None
    attempt: int
    declined: tuple[str, ...]
    fare: float | None
    surge: float | None
    quote_id: str | None
    pickup_eta_s: float | None
    trip_eta_s: float | None
    cancelled_by: str | None
    timeline: tuple[tuple[RideStatus, int], ...]

    @classmethod
    def from_hash(cls, h: Fields) -> Ride:
        status = h["status"]
        if status not in RIDE_STATUSES:
            raise ValueError(f"ride {h.get('ride_id')} has unknown status {status!r}")
        timeline = tuple((s, int(h[f"{s}_at"])) for s in RIDE_STATUSES if h.get(f"{s}_at"))
        return cls(
            ride_id=h["ride_id"],
            rider_id=h["rider_id"],
            market=h["market"],
            status=status,
            version=int(h["version"]),
            driver_id=_opt_str(h.get("driver_id")),
            pickup=Point(lat=float(h["pickup_lat"]), lon=float(h["pickup_lon"])),
            dropoff=Point(lat=float(h["dropoff_lat"]), lon=float(h["dropoff_lon"])),
            requested_at=int(h["requested_at"]),
            deadline_at=int(h["deadline_at"]),
            offer_driver_id=_opt_str(h.get("offer_driver_id")),
            offer_expires_at=_opt_int(h.get("offer_expires_at")),
            attempt=int(h.get("attempt") or 0),
            declined=tuple(d for d in h.get("declined", "").split(",") if d),
            fare=_opt_float(h.get("fare")),
            surge=_opt_float(h.get("surge")),
            quote_id=_opt_str(h.get("quote_id")),
            pickup_eta_s=_opt_float(h.get("pickup_eta_s")),
            trip_eta_s=_opt_float(h.get("trip_eta_s")),
            cancelled_by=_opt_str(h.get("cancelled_by")),
            timeline=timeline,
        )

    def to_public(self) -> dict[str, Any]:
        """JSON-ready view for riders, drivers and the dashboard (no internal matching state)."""
        return {
            "ride_id": self.ride_id,
            "rider_id": self.rider_id,
            "market": self.market,
            "status": self.status,
            "version": self.version,
            "driver_id": self.driver_id,
            "pickup": {"lat": self.pickup.lat, "lon": self.pickup.lon},
            "dropoff": {"lat": self.dropoff.lat, "lon": self.dropoff.lon},
            "fare": self.fare,
            "surge": self.surge,
            "quote_id": self.quote_id,
            "pickup_eta_s": self.pickup_eta_s,
            "trip_eta_s": self.trip_eta_s,
            "deadline_at": self.deadline_at,
            "cancelled_by": self.cancelled_by,
            "timeline": [{"status": status, "at": at} for status, at in self.timeline],
        }


@dataclass(frozen=True, slots=True)
class Driver:
    """A driver's status; `ride_id` is the ride or offer it holds (None when free)."""

    driver_id: str
    status: DriverStatus
    version: int
    ride_id: str | None

    @classmethod
    def from_hash(cls, h: Fields) -> Driver:
        status = h["status"]
        if status not in DRIVER_STATUSES:
            raise ValueError(f"driver {h.get('driver_id')} has unknown status {status!r}")
        return cls(
            driver_id=h["driver_id"],
            status=status,
            version=int(h["version"]),
            ride_id=_opt_str(h.get("ride_id")),
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "driver_id": self.driver_id,
            "status": self.status,
            "version": self.version,
            "ride_id": self.ride_id,
        }
