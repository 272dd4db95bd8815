"""Markets (the unit of partitioning) and the point→market lookup."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


# A market id is a Redis Cluster hash tag ({sf}) inside every key, the first part of its ride
# ids (sf-…, split at the first dash) and a stream name's part: braces, colons, dashes or
# blanks would break one of them.
MARKET_ID_PATTERN = r"[a-z0-9_]{1,32}"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a misspelt key is not a default


Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _BBoxSpec(_Spec):
    min_lat: Latitude
    min_lon: Longitude
    max_lat: Latitude
    max_lon: Longitude

    @model_validator(mode="after")
    def _not_empty(self) -> _BBoxSpec:
        if self.min_lat >= self.max_lat or self.min_lon >= self.max_lon:
            raise ValueError("min_lat and min_lon must be below max_lat and max_lon")
        return self


class _CenterSpec(_Spec):
    lat: Latitude
    lon: Longitude


class _FaresSpec(_Spec):
    base_usd: Price = DEFAULT_FARES.base_usd
    per_km_usd: Price = DEFAULT_FARES.per_km_usd
    per_min_usd: Price = DEFAULT_FARES.per_min_usd
    minimum_usd: Price = DEFAULT_FARES.minimum_usd
    booking_fee_usd: Price = DEFAULT_FARES.booking_fee_usd


class _MarketSpec(_Spec):
    id: str
    name: str = Field(min_length=1)
    bbox: _BBoxSpec
    center: _CenterSpec
    fares: _FaresSpec | None = None

    @field_validator("id")
    @classmethod
    def _plain_id(cls, market_id: str) -> str:
        if not re.fullmatch(MARKET_ID_PATTERN, market_id):
            raise ValueError(f"{market_id!r} is not 1 to 32 of a-z, 0-9 and _")
        return market_id


class _MarketsFileSpec(_Spec):
    markets: list[_MarketSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> _MarketsFileSpec:
        ids = [m.id for m in self.markets]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"market id(s) {', '.join(twice)} given more than once")
        return self


class InvalidMarketsFile(ValueError):
    """The markets file, with one line per problem naming its field."""


def _field(loc: tuple[int | str, ...]) -> str:
    """('markets', 0, 'bbox', 'min_lat') → markets[0].bbox.min_lat"""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "the file"


def _parse(text: str, source: str) -> MarketMap:
    """Markets from the file's text, checked whole first (one line per problem, each naming
    its field), so no service starts on a file another would fail on."""
    try:
        spec = _MarketsFileSpec.model_validate_json(text)
    except ValidationError as exc:
        problems = [
            f"{_field(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        if len(problems) == 1:
            raise InvalidMarketsFile(f"{source}: {problems[0]}") from None
        raise InvalidMarketsFile(f"{source}:\n  " + "\n  ".join(problems)) from None
    return MarketMap(
        [
            Market(
                id=m.id,
                name=m.name,
                bbox=BBox(**m.bbox.model_dump()),
                center=LatLon(**m.center.model_dump()),
                fares=FareTable(**m.fares.model_dump()) if m.fares else DEFAULT_FARES,
            )
            for m in spec.markets
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
    return select(_parse(text, str(path or "ridepulse/markets.json")), only)
