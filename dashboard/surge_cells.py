"""Surge cells with their hexagon outlines, computed on the server so the page needs no h3-js."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import h3


@lru_cache(maxsize=16_384)
def boundary(cell: str) -> tuple[tuple[float, float], ...] | None:
    """[lat, lon] vertices of an H3 cell, rounded to ~0.1 m; None for a malformed cell id."""
    try:
        if not h3.is_valid_cell(cell):
            return None
        return tuple((round(lat, 6), round(lon, 6)) for lat, lon in h3.cell_to_boundary(cell))
    except (ValueError, TypeError, h3.H3BaseException):
        return None


def surge_cell(cell: str, multiplier: float) -> dict[str, Any] | None:
    outline = boundary(cell)
    if outline is None:
        return None
    return {"cell": cell, "multiplier": multiplier, "boundary": [list(p) for p in outline]}
