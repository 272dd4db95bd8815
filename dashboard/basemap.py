"""The offline base map: the market outline, a reference street grid and lettered sectors.

Deterministic, so the committed static/basemap.geojson is checked against a regeneration;
`python -m dashboard.basemap` rewrites it after a change to the default market."""

from __future__ import annotations

import json
import math
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from ridepulse.markets import Market, load_markets

STATIC_BASEMAP = Path(__file__).parent / "static" / "basemap.geojson"
STREET_SPACING_M = 400.0  # a minor line every 400 m, an arterial every fourth line
ARTERIAL_EVERY = 4
SECTOR_SPACING_M = 3000.0
METRES_PER_DEG_LAT = 111_320.0


def _r(value: float) -> float:
    return round(value, 6)


def _feature(kind: str, geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"kind": kind, **props}, "geometry": geometry}


def _steps(low: float, high: float, step: float) -> list[float]:
    """Grid positions aligned to multiples of `step` strictly inside (low, high)."""
    first = math.floor(low / step) + 1
    return [i * step for i in range(first, math.ceil(high / step)) if low < i * step < high]


def generate(market: Market) -> dict[str, Any]:
    b = market.bbox
    deg_lat = STREET_SPACING_M / METRES_PER_DEG_LAT
    deg_lon = STREET_SPACING_M / (METRES_PER_DEG_LAT * math.cos(math.radians(market.center.lat)))
    outline = [
        [b.min_lon, b.min_lat],
        [b.max_lon, b.min_lat],
        [b.max_lon, b.max_lat],
        [b.min_lon, b.max_lat],
    ]
    features = [
        _feature(
            "outline",
            {
                "type": "Polygon",
                "coordinates": [[[_r(x), _r(y)] for x, y in [*outline, outline[0]]]],
            },
            name=market.name,
        ),
    ]
    for lat in _steps(b.min_lat, b.max_lat, deg_lat):
        kind = "arterial" if round(lat / deg_lat) % ARTERIAL_EVERY == 0 else "street"
        line = [[_r(b.min_lon), _r(lat)], [_r(b.max_lon), _r(lat)]]
        features.append(_feature(kind, {"type": "LineString", "coordinates": line}))
    for lon in _steps(b.min_lon, b.max_lon, deg_lon):
        kind = "arterial" if round(lon / deg_lon) % ARTERIAL_EVERY == 0 else "street"
        line = [[_r(lon), _r(b.min_lat)], [_r(lon), _r(b.max_lat)]]
        features.append(_feature(kind, {"type": "LineString", "coordinates": line}))
    features.extend(_sectors(market))
    return {
        "type": "FeatureCollection",
        "properties": {"market": market.id, "name": market.name},
        "features": features,
    }


def _sectors(market: Market) -> list[dict[str, Any]]:
    """Map-grid references ("B3") at the centres of roughly 3 km squares, north to south."""
    b = market.bbox
    height_m = (b.max_lat - b.min_lat) * METRES_PER_DEG_LAT
    width_m = (
        (b.max_lon - b.min_lon) * METRES_PER_DEG_LAT * math.cos(math.radians(market.center.lat))
    )
    rows, cols = (
        max(1, round(height_m / SECTOR_SPACING_M)),
        max(1, round(width_m / SECTOR_SPACING_M)),
    )
    out = []
    for row in range(rows):
        for col in range(cols):
            lat = b.max_lat - (row + 0.5) * (b.max_lat - b.min_lat) / rows
            lon = b.min_lon + (col + 0.5) * (b.max_lon - b.min_lon) / cols
            name = f"{string.ascii_uppercase[row % 26]}{col + 1}"
            out.append(
                _feature("sector", {"type": "Point", "coordinates": [_r(lon), _r(lat)]}, name=name)
            )
    return out


def render(market: Market) -> str:
    """One feature per line: stable bytes and readable diffs."""
    doc = generate(market)
    head = json.dumps({k: v for k, v in doc.items() if k != "features"}, separators=(",", ":"))[:-1]
    body = ",\n".join(json.dumps(f, separators=(",", ":")) for f in doc["features"])
    return f'{head},"features":[\n{body}\n]}}\n'


@lru_cache(maxsize=8)
def _committed_market() -> str | None:
    try:
        first_line = STATIC_BASEMAP.read_text().split("\n", 1)[0]
        return str(json.loads(first_line + "]}")["properties"]["market"])
    except (OSError, ValueError, KeyError):
        return None


@lru_cache(maxsize=8)
def _cached(market: Market) -> bytes:
    if _committed_market() == market.id:
        return STATIC_BASEMAP.read_bytes()
    return render(market).encode()


def basemap_for(market: Market) -> bytes:
    """The committed file for the market it was made for; any other market is generated."""
    return _cached(market)


def main() -> None:
    STATIC_BASEMAP.write_text(render(load_markets().default))


if __name__ == "__main__":
    main()
