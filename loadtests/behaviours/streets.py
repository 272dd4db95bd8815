"""A market's street grid and routes along it, in a local metric frame.

Manhattan-style blocks with every Nth street an arterial, laid inside the market's bounding box, so
simulated drivers move the way real ones do (along streets, turning at corners) and the ETA service
sees speeds that depend on the road type. Everything is deterministic given the bbox.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from dataclasses import dataclass

from ridepulse.markets import BBox, LatLon

XY = tuple[float, float]
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class Frame:
    """Equirectangular projection of a bbox: metres east (x) and north (y) of its south-west corner.

    Good to well under 1 % over a city-sized box, and much cheaper than a real projection per ping.
    """

    bbox: BBox

    @property
    def m_per_deg_lon(self) -> float:
        mid_lat = (self.bbox.min_lat + self.bbox.max_lat) / 2
        return M_PER_DEG_LAT * math.cos(math.radians(mid_lat))

    @property
    def width_m(self) -> float:
        return (self.bbox.max_lon - self.bbox.min_lon) * self.m_per_deg_lon

    @property
    def height_m(self) -> float:
        return (self.bbox.max_lat - self.bbox.min_lat) * M_PER_DEG_LAT

    def to_xy(self, lat: float, lon: float) -> XY:
        return (
            (lon - self.bbox.min_lon) * self.m_per_deg_lon,
            (lat - self.bbox.min_lat) * M_PER_DEG_LAT,
        )

    def to_latlon(self, x: float, y: float) -> LatLon:
        return LatLon(
            lat=self.bbox.min_lat + y / M_PER_DEG_LAT,
            lon=self.bbox.min_lon + x / self.m_per_deg_lon,
        )

    def clamp(self, x: float, y: float, inset_m: float = 1.0) -> XY:
        """Keep a (noisy) point inside the market, so a ping is never rejected as outside it.

        The inset keeps a point inside even after its coordinates are rounded for the wire.
        """
        return (
            min(max(x, inset_m), self.width_m - inset_m),
            min(max(y, inset_m), self.height_m - inset_m),
        )


def bearing_deg(a: XY, b: XY) -> float:
    """Compass bearing from a to b: 0 = north, 90 = east."""
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


class Polyline:
    """A route: points in metres with cumulative distances, for position-by-distance lookups."""

    def __init__(self, points: list[XY]) -> None:
        if not points:
            raise ValueError("a polyline needs at least one point")
        self.points = points
        self.cumulative_m = [0.0]
        for a, b in itertools.pairwise(points):
            self.cumulative_m.append(self.cumulative_m[-1] + math.dist(a, b))

    @property
    def length_m(self) -> float:
        return self.cumulative_m[-1]

    @property
    def end(self) -> XY:
        return self.points[-1]

    def position_at(self, distance_m: float) -> XY:
        """The point `distance_m` along the route, clamped to its ends."""
        if distance_m <= 0 or len(self.points) == 1:
            return self.points[0]
        if distance_m >= self.length_m:
            return self.points[-1]
        i = bisect_right(self.cumulative_m, distance_m) - 1
        a, b = self.points[i], self.points[i + 1]
        seg = self.cumulative_m[i + 1] - self.cumulative_m[i]
        t = (distance_m - self.cumulative_m[i]) / seg if seg else 0.0
        return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


class StreetGrid:
    """Streets every `block_m`, arterials every `arterial_every` streets, one through the centre."""

    def __init__(
        self, bbox: BBox, center: LatLon, *, block_m: float = 200.0, arterial_every: int = 8
    ) -> None:
        self.frame = Frame(bbox)
        self.block_m = block_m
        self.xs = _lines(self.frame.width_m, block_m)
        self.ys = _lines(self.frame.height_m, block_m)
        self.center = self.frame.to_xy(center.lat, center.lon)
        ci, cj = self.nearest_intersection(self.center)
        self.arterial_cols = frozenset(
            i for i in range(len(self.xs)) if (i - ci) % arterial_every == 0
        )
        self.arterial_rows = frozenset(
            j for j in range(len(self.ys)) if (j - cj) % arterial_every == 0
        )

    def nearest_intersection(self, p: XY) -> tuple[int, int]:
        return (_nearest_index(self.xs, p[0]), _nearest_index(self.ys, p[1]))

    def intersection(self, i: int, j: int) -> XY:
        return (self.xs[i], self.ys[j])

    def random_intersection(
        self, rng: random.Random, near: XY | None = None, radius_m: float = 0
    ) -> XY:
        """Any corner of the grid, or one within `radius_m` of `near` (so roaming stays local)."""
        if near is None or radius_m <= 0:
            return self.intersection(rng.randrange(len(self.xs)), rng.randrange(len(self.ys)))
        ci, cj = self.nearest_intersection(near)
        reach = max(1, int(radius_m / self.block_m))
        i = min(max(ci + rng.randint(-reach, reach), 0), len(self.xs) - 1)
        j = min(max(cj + rng.randint(-reach, reach), 0), len(self.ys) - 1)
        return self.intersection(i, j)

    def is_arterial(self, p: XY, tolerance_m: float = 0.5) -> bool:
        i, j = self.nearest_intersection(p)
        on_col = i in self.arterial_cols and abs(p[0] - self.xs[i]) <= tolerance_m
        on_row = j in self.arterial_rows and abs(p[1] - self.ys[j]) <= tolerance_m
        return on_col or on_row

    def route(self, a: XY, b: XY) -> Polyline:
        """A drivable path a → b: to the nearest corner, along the grid, then to b.

        Short trips take an L (east-west first); longer ones climb to the nearest arterial row,
        ride it across and come back down, as a driver who knows the city would.
        """
        ia, ja = self.nearest_intersection(a)
        ib, jb = self.nearest_intersection(b)
        points = [a, self.intersection(ia, ja)]
        grid_m = abs(self.xs[ib] - self.xs[ia]) + abs(self.ys[jb] - self.ys[ja])
        if grid_m > 8 * self.block_m and self.arterial_rows:
            r = min(self.arterial_rows, key=lambda j: abs(j - ja) + abs(j - jb))
            points += [self.intersection(ia, r), self.intersection(ib, r)]
        else:
            points.append(self.intersection(ib, ja))
        points += [self.intersection(ib, jb), b]
        return Polyline(_dedupe(points))


def _lines(extent_m: float, block_m: float) -> list[float]:
    """Street positions along one axis, centred in the extent with half a block of margin."""
    count = max(1, int((extent_m - block_m) // block_m) + 1)
    offset = (extent_m - (count - 1) * block_m) / 2
    return [offset + k * block_m for k in range(count)]


def _nearest_index(lines: list[float], value: float) -> int:
    i = bisect_right(lines, value)
    if i == 0:
        return 0
    if i == len(lines):
        return len(lines) - 1
    return i if lines[i] - value < value - lines[i - 1] else i - 1


def _dedupe(points: list[XY]) -> list[XY]:
    out = [points[0]]
    for p in points[1:]:
        if math.dist(p, out[-1]) > 0.01:
            out.append(p)
    return out
