"""A ride projection hash → the dict the page shows, with its timeline of transitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ridepulse.rides.state import RIDE_STATUSES, TERMINAL

# The state machine's statuses in lifecycle order: it breaks ties between transitions that share
# a millisecond.
LIFECYCLE = RIDE_STATUSES
OPEN = frozenset({"requested", "offered"})

Ride = dict[str, Any]


def text_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """HGETALL reply (bytes) → str dict."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _int(value: str | None) -> int | None:
    return int(float(value)) if value else None


def timeline(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each reached status with its epoch-ms time, in the order it happened."""
    steps = [
        (int(float(fields[f"{s}_at"])), i, s)
        for i, s in enumerate(LIFECYCLE)
        if fields.get(f"{s}_at")
    ]
    return [{"status": s, "at": at} for at, _, s in sorted(steps)]


def ride_from_hash(fields: Mapping[str, str]) -> Ride | None:
    """None for an empty or unreadable hash (a ride that is gone or not written yet).

    The ride scripts write "" for values not reached yet; "" and absent mean the same here."""
    if not fields.get("ride_id") or not fields.get("status"):
        return None
    try:
        return {
            "ride_id": fields["ride_id"],
            "rider_id": fields.get("rider_id") or None,
            "status": fields["status"],
            "version": _int(fields.get("version")) or 0,
            "driver_id": fields.get("driver_id") or None,
            "pickup_lat": _float(fields.get("pickup_lat")),
            "pickup_lon": _float(fields.get("pickup_lon")),
            "dropoff_lat": _float(fields.get("dropoff_lat")),
            "dropoff_lon": _float(fields.get("dropoff_lon")),
            "requested_at": _int(fields.get("requested_at")),
            "fare": _float(fields.get("fare")),
            "surge": _float(fields.get("surge")),
            "pickup_eta_s": _float(fields.get("pickup_eta_s")),
            "trip_eta_s": _float(fields.get("trip_eta_s")),
            "timeline": timeline(fields),
        }
    except ValueError:
        return None


def reached_at(ride: Ride, status: str) -> int | None:
    for step in ride["timeline"]:
        if step["status"] == status:
            return int(step["at"])
    return None


def finished_at(ride: Ride) -> int | None:
    """When a terminal ride ended; None while it is active."""
    if ride["status"] not in TERMINAL:
        return None
    return reached_at(ride, ride["status"]) or ride.get("requested_at") or 0
