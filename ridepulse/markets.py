"""Markets (the unit of partitioning) and the point→market lookup."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ridepulse.errors import OutsideServiceArea


@dataclass(frozen=True, slots=True)
class LatLon:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class BBox:
    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


@dataclass(frozen=True, slots=True)
class Market:
    id: str
    name: str
    bbox: BBox
    center: LatLon


class MarketMap:
    """The configured markets, in file order; the first market containing a point wins."""

    def __init__(self, markets: list[Market]) -> None:
        if not markets:
            raise ValueError("at least one market is required")
        self.markets = markets
        self.by_id = {m.id: m for m in markets}

    def locate(self, lat: float, lon: float) -> Market:
        for market in self.markets:
            if market.bbox.contains(lat, lon):
                return market
        raise OutsideServiceArea(f"({lat:.5f}, {lon:.5f}) is outside every service area")

    def get(self, market_id: str) -> Market:
        return self.by_id[market_id]

    @property
    def default(self) -> Market:
        return self.markets[0]


def _parse(doc: dict[str, object]) -> MarketMap:
    raw = doc["markets"]
    assert isinstance(raw, list)
    return MarketMap(
        [
            Market(
                id=m["id"],
                name=m["name"],
                bbox=BBox(**m["bbox"]),
                center=LatLon(**m["center"]),
            )
            for m in raw
        ]
    )


def load_markets(path: Path | None = None) -> MarketMap:
    """Markets from a JSON file, or the built-in San Francisco market."""
    if path is None:
        text = resources.files("ridepulse").joinpath("markets.json").read_text()
    else:
        text = path.read_text()
    return _parse(json.loads(text))
