"""Markets (the unit of partitioning) and the point→market lookup."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ridepulse.errors import OutsideServiceArea
from ridepulse.fares import DEFAULT_FARES, FareTable


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
    # Each city has its own rate card; a market without one in the file uses the default card.
    fares: FareTable = DEFAULT_FARES


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
                fares=FareTable(**m["fares"]) if "fares" in m else DEFAULT_FARES,
            )
            for m in raw
        ]
    )


def select(markets: MarketMap, only: str | None) -> MarketMap:
    """The markets this deployment runs: ``None``/empty = the first one only (one city keeps the
    default demo responsive on a 2-core laptop: every market adds its own simulated fleet, streams
    and readers), ``"all"`` = every market of the file, else a comma-separated list of ids."""
    if not only:
        return MarketMap(markets.markets[:1])
    if only.strip() == "all":
        return markets
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [m for m in wanted if m not in markets.by_id]
    if unknown or not wanted:
        known = ", ".join(markets.by_id)
        raise ValueError(f"unknown market(s) {', '.join(unknown) or only!r}; known: {known}")
    return MarketMap([markets.by_id[m] for m in dict.fromkeys(wanted)])


def load_markets(path: Path | None = None, only: str | None = None) -> MarketMap:
    """Markets from a JSON file, or the built-in ones (San Francisco, New York), narrowed to
    ``only`` (see `select`; services pass ``settings.markets``)."""
    if path is None:
        text = resources.files("ridepulse").joinpath("markets.json").read_text()
    else:
        text = path.read_text()
    return select(_parse(json.loads(text)), only)
