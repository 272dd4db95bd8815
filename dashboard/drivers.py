"""Driver samples: the positions and statuses hashes → the dots on the map."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ridepulse.positions import parse_position

Driver = dict[str, Any]
COORD_DECIMALS = 5


def driver_dot(driver_id: str, packed: str, status: str) -> Driver | None:
    """A dot for the map from matching's packed position; None when malformed."""
    position = parse_position(packed)
    if position is None:
        return None
    heading = None if position.heading is None else round(position.heading)
    return {
        "id": driver_id,
        # 5 decimals are about a metre: finer only lengthens every frame
        "lat": round(position.lat, COORD_DECIMALS),
        "lon": round(position.lon, COORD_DECIMALS),
        "status": status,
        "heading": heading,
    }


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
