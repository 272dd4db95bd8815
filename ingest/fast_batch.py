"""Batch telemetry decoded straight from the request bytes into msgspec structs.

`POST /v1/telemetry` carries up to thousands of pings; per-ping Python validation
(`check_ping`, a dict per ping) was a third of the worker's CPU. Here one compiled decoder
checks types and ranges in C while it parses, and only what depends on the clock (ts) and on
the market map is checked in a short loop. The limits are ingest.validation's constants, the
same ones schemas.py documents in the OpenAPI.

A batch that fails anywhere returns None: the route then runs the per-item path, which
rejects each bad item alone with the reason and field it always gave (the error shapes have
one implementation). Bad batches are rare and pay the old price; good ones take this path."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from ingest.validation import (
    FUTURE_TOLERANCE_MS,
    ID_CHARS,
    LAT_RANGE,
    LON_RANGE,
    MAX_ACCURACY_M,
    MAX_AGE_MS,
    MAX_HEADING_DEG,
    MAX_ID_LENGTH,
    MAX_SPEED_MPS,
)
from ridepulse.errors import OutsideServiceArea
from ridepulse.markets import MarketMap

# The id's characters are checked for the whole batch by one regex over the ids joined with
# "\n" (never inside an id): a per-string `pattern` in the decoder was 2/3 of its time. Linear
# only as ID_CHARS matches an id in one way (ingest.validation says what the other way cost).
DriverIdField = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_IDS = re.compile(f"(?:{ID_CHARS})(?:\n(?:{ID_CHARS}))*")
Lat = Annotated[float, msgspec.Meta(ge=LAT_RANGE[0], le=LAT_RANGE[1])]
Lon = Annotated[float, msgspec.Meta(ge=LON_RANGE[0], le=LON_RANGE[1])]
Speed = Annotated[float, msgspec.Meta(ge=0, le=MAX_SPEED_MPS)]
Heading = Annotated[float, msgspec.Meta(ge=0, le=MAX_HEADING_DEG)]
Accuracy = Annotated[float, msgspec.Meta(ge=0, le=MAX_ACCURACY_M)]


class FleetPing(msgspec.Struct, omit_defaults=True):
    """One ping as it goes on the stream: fields in check_ping's order, absent ones omitted."""

    driver_id: DriverIdField
    lat: Lat
    lon: Lon
    ts: int | None = None
    speed_mps: Speed | None = None
    heading: Heading | None = None
    accuracy_m: Accuracy | None = None


class _Batch(msgspec.Struct):
    pings: list[FleetPing]


class DecodedBatch(dict[str, list[FleetPing]]):
    """Valid pings by market id; `in_order`, the same pings as the batch listed them (the
    index a rejected one is named by)."""

    def __init__(self, by_market: dict[str, list[FleetPing]], in_order: list[FleetPing]) -> None:
        super().__init__(by_market)
        self.in_order = in_order


_DECODER = msgspec.json.Decoder(_Batch)


def decode_batch(raw: bytes, now: int, markets: MarketMap) -> DecodedBatch | None:
    """Valid pings grouped by market id, or None if any item (or the body) is invalid.

    Checks run over whole columns in C (join + one regex, min/max), not one ping at a time."""
    try:
        pings = _DECODER.decode(raw).pings
    # msgspec lets bytes that are not UTF-8 through as UnicodeDecodeError, and nesting past its
    # depth as RecursionError; the per-item path answers each with a 422
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError included
        return None
    if not pings:
        return DecodedBatch({}, pings)
    ids = "\n".join([ping.driver_id for ping in pings])
    if ids.count("\n") != len(pings) - 1 or _IDS.fullmatch(ids) is None:
        return None  # (an id with a "\n" inside would otherwise pass as two)
    given = [ping.ts for ping in pings]
    stamps = [ts for ts in given if ts is not None]
    if len(stamps) < len(given):  # an absent ts is "now" (check_ping)
        for ping in pings:
            if ping.ts is None:
                ping.ts = now
    if stamps and (min(stamps) < now - MAX_AGE_MS or max(stamps) > now + FUTURE_TOLERANCE_MS):
        return None
    lats = [ping.lat for ping in pings]
    lons = [ping.lon for ping in pings]
    first = markets.markets[0].bbox
    if first.contains(min(lats), min(lons)) and first.contains(max(lats), max(lons)):
        return DecodedBatch({markets.markets[0].id: pings}, pings)  # the box is in one market
    by_market = _by_market(pings, markets)
    return None if by_market is None else DecodedBatch(by_market, pings)


def _by_market(pings: list[FleetPing], markets: MarketMap) -> dict[str, list[FleetPing]] | None:
    by_market: dict[str, list[FleetPing]] = {}
    try:
        for ping in pings:
            by_market.setdefault(markets.locate(ping.lat, ping.lon).id, []).append(ping)
    except OutsideServiceArea:
        return None
    return by_market


def count(by_market: dict[str, list[FleetPing]]) -> int:
    return sum(len(group) for group in by_market.values())
