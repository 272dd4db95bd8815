"""Driver samples: the positions and statuses hashes → the dots on the map."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

Driver = dict[str, Any]


def driver_dot(driver_id: str, packed: str, status: str) -> Driver | None:
    """`packed` is "lat,lon,ts_ms,heading" (heading may be empty); None when malformed."""
    parts = packed.split(",")
    try:
        lat, lon = round(float(parts[0]), 6), round(float(parts[1]), 6)
        heading = round(float(parts[3])) if len(parts) > 3 and parts[3] else None
    except (ValueError, IndexError):
        return None
    return {"id": driver_id, "lat": lat, "lon": lon, "status": status, "heading": heading}


def sample_drivers(
    positions: Mapping[str, str], statuses: Mapping[str, str]
) -> tuple[dict[str, Driver], dict[str, int]]:
    """(dots of drivers that are online and have a position, count of drivers per status).

    A driver with a position but no status has never gone online: it is offline."""
    dots: dict[str, Driver] = {}
    for driver_id, packed in positions.items():
        status = statuses.get(driver_id, "offline")
        if status == "offline":
            continue
        dot = driver_dot(driver_id, packed, status)
        if dot is not None:
            dots[driver_id] = dot
    return dots, dict(Counter(statuses.values()))
