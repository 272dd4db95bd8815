"""Ride-stream events → compact entries of the page's live event log."""

from __future__ import annotations

from typing import Any

from ridepulse.contracts.envelope import Envelope

Entry = dict[str, Any]


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def detail(event_type: str, data: dict[str, Any]) -> str:
    """One short human line per event type; empty when there is nothing to add."""
    parts: list[str] = []
    if event_type == "ride.requested" and data.get("surge") and float(data["surge"]) > 1:
        parts.append(f"surge {float(data['surge']):.1f}×")
    if event_type in ("ride.offered", "ride.matched") and data.get("pickup_eta_s") is not None:
        parts.append(f"ETA {_duration(float(data['pickup_eta_s']))}")
    if event_type == "ride.offered" and data.get("attempt"):
        parts.append(f"attempt {data['attempt']}")
    if data.get("fare") is not None:
        parts.append(f"fare ${float(data['fare']):.2f}")
    if event_type == "ride.unmatched" and data.get("reason"):
        parts.append(str(data["reason"]).replace("_", " "))
    if event_type == "ride.cancelled" and data.get("by"):
        parts.append(f"by {data['by']}")
    if event_type == "driver.status" and data.get("status"):
        parts.append(str(data["status"]))
    return " · ".join(parts)


def log_entry(envelope: Envelope) -> Entry:
    data = envelope.data
    ride_id = data.get("ride_id")
    driver_id = data.get("driver_id")
    return {
        "id": envelope.id,
        "type": envelope.type,
        "time": envelope.time,
        "ride_id": ride_id if isinstance(ride_id, str) else None,
        "driver_id": driver_id if isinstance(driver_id, str) else None,
        "detail": detail(envelope.type, data),
    }
