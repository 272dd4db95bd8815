"""H3 cells and distances: the spatial vocabulary of surge, speeds and the dashboard.

Cells are H3 v4 string ids. The default resolution is 8: an average hexagon covers 0.737 km² with a
531 m edge (``h3.average_hexagon_area(8, "km^2")``, ``h3.average_hexagon_edge_length(8, "m")``) — a
few city blocks. That is fine enough for a jammed downtown grid and a free-flowing arterial to land
in different cells, and coarse enough for a cell to gather enough pings and ride requests within a
five-minute window to say something. Resolution 7 (5.16 km²) blurs a whole neighbourhood;
resolution 9 (0.105 km²) leaves most cells empty.

Lines are sampled in plain latitude/longitude, which is accurate at city scale (a market is
a few tens of kilometres) and not meant to cross the antimeridian or the poles.
"""

from __future__ import annotations

import math
from functools import cache

import h3

DEFAULT_RESOLUTION = 8

LatLng = tuple[float, float]


def cell_of(lat: float, lon: float, resolution: int = DEFAULT_RESOLUTION) -> str:
    """The H3 cell containing a point."""
    return str(h3.latlng_to_cell(lat, lon, resolution))


def neighbours(cell: str, k: int = 1) -> set[str]:
    """Every cell within ``k`` grid steps, the cell itself included (H3 grid_disk)."""
    return set(h3.grid_disk(cell, k))


def ring(cell: str, k: int) -> set[str]:
    """The cells exactly ``k`` grid steps away (``ring(cell, 0) == {cell}``)."""
    return set(h3.grid_ring(cell, k))


def cell_center(cell: str) -> LatLng:
    """The centre of a cell as (lat, lon)."""
    lat, lon = h3.cell_to_latlng(cell)
    return float(lat), float(lon)


def cell_boundary(cell: str) -> list[LatLng]:
    """The cell's vertices as (lat, lon), in order, for drawing it on the dashboard map."""
    return list(h3.cell_to_boundary(cell))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (H3's implementation; no detour applied)."""
    return float(h3.great_circle_distance((lat1, lon1), (lat2, lon2), unit="m"))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from the first point to the second: degrees clockwise from north, in
    [0, 360)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlon = math.radians(lon2 - lon1)
    x = math.sin(dlon) * math.cos(phi2)
    y = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlon)
    return math.degrees(math.atan2(x, y)) % 360.0


@cache
def _sample_spacing_m(resolution: int) -> float:
    # Half an edge: a straight line cannot cross a hexagon without leaving a sample in it,
    # except by clipping a corner, which contributes next to nothing to a trip's time.
    return float(h3.average_hexagon_edge_length(resolution, unit="m")) / 2.0


def cells_along(a: LatLng, b: LatLng, resolution: int = DEFAULT_RESOLUTION) -> list[str]:
    """The distinct cells a straight line from ``a`` to ``b`` passes through, in travel order.

    Sampled every half edge length rather than H3's grid_path_cells, which follows the grid
    (not the line) and fails across icosahedron faces and pentagons.
    """
    distance_m = haversine_m(a[0], a[1], b[0], b[1])
    steps = max(1, math.ceil(distance_m / _sample_spacing_m(resolution)))
    dlat, dlon = (b[0] - a[0]) / steps, (b[1] - a[1]) / steps
    cells: list[str] = []
    for i in range(steps + 1):
        cell = h3.latlng_to_cell(a[0] + dlat * i, a[1] + dlon * i, resolution)
        if not cells or cells[-1] != cell:
            cells.append(cell)
    # A line can leave a cell and come back (it grazes a boundary); keep the first visit only.
    return list(dict.fromkeys(cells))
