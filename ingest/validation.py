"""Fast validation of API input: pings, points and trips. Pings are the hot path: plain checks
on decoded JSON, no model instantiation per ping (the OpenAPI schema still documents them:
schemas.py takes its limits from here)."""

from __future__ import annotations

import math
import re
from typing import Any

# the stream holds pings to the same rule (re-exported: schemas and fast_batch take it from here)
from ridepulse.contracts.telemetry_decode import FUTURE_TOLERANCE_MS as FUTURE_TOLERANCE_MS
from ridepulse.errors import InvalidInput, OutsideServiceArea
from ridepulse.geo import haversine_m
from ridepulse.markets import Market, MarketMap

MAX_AGE_MS = 5 * 60_000  # older pings are useless for dispatch and would corrupt speed learning
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)
MAX_SPEED_MPS = 90.0
MAX_HEADING_DEG = 360.0
MAX_ACCURACY_M = 10_000.0
MAX_ID_LENGTH = 64
# The one rule for an id, which check_id, the batch decoder (ingest.fast_batch) and the OpenAPI
# pattern (ingest.schemas) all take from here: ASCII letters and digits, '-', '_' and '.', at
# least one letter or digit ("." or "--" alone is refused). ASCII only, as generated clients
# obey the pattern: check_id took any Unicode letter or digit, so `été`, `١٢` (Arabic-Indic
# digits) and look-alikes of other ids (`d-4２`, a fullwidth 2) were drivers of their own.
# Written so that a string matches in one way only (punctuation, the first letter or digit, the
# rest): `[A-Za-z0-9._-]*[A-Za-z0-9][A-Za-z0-9._-]*`, the same set, could split an id of n
# letters n ways, and the batch decoder's regex over ids joined by "\n" tried every split of
# every id before refusing a bad last one: 9 ids of 8 letters then `bad id` held the event loop
# 45.8 s (tests/unit/test_fast_batch.py).
ID_CHARS = r"[._-]*[A-Za-z0-9][A-Za-z0-9._-]*"
ID_PATTERN = f"^{ID_CHARS}$"
_ID = re.compile(ID_CHARS)
MIN_TRIP_M = 50.0  # closer than this, pickup and dropoff are one place: no trip to price or drive


def _number(
    body: dict[str, Any], name: str, low: float, high: float, *, required: bool
) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number", field=name)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}", field=name)
    return float(value)


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} characters", field=name
        )
    if not _ID.fullmatch(value):
        raise InvalidInput(
            f"{name} may contain only ASCII letters and digits, '-', '_' and '.', "
            "with at least one letter or digit",
            field=name,
        )
    return value


def check_ping(body: Any, driver_id: str, now_ms: int) -> dict[str, Any]:
    """A validated ping as a compact dict (only the fields given), or InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("a ping must be a JSON object")
    lat = _number(body, "lat", *LAT_RANGE, required=True)
    lon = _number(body, "lon", *LON_RANGE, required=True)
    ts_raw = body.get("ts")
    if ts_raw is None:
        ts = now_ms
    else:
        if isinstance(ts_raw, bool) or not isinstance(ts_raw, int):
            # an integer past 64 bits is decoded as a float: the range is what it misses
            raise InvalidInput(
                f"ts must be an integer of epoch milliseconds, at most "
                f"{FUTURE_TOLERANCE_MS // 1000} s ahead and {MAX_AGE_MS // 60_000} minutes old",
                field="ts",
            )
        if ts_raw > now_ms + FUTURE_TOLERANCE_MS:
            raise InvalidInput("ts is in the future", field="ts")
        if ts_raw < now_ms - MAX_AGE_MS:
            raise InvalidInput(f"ts is more than {MAX_AGE_MS // 60_000} minutes old", field="ts")
        ts = ts_raw
    ping: dict[str, Any] = {"driver_id": driver_id, "lat": lat, "lon": lon, "ts": ts}
    speed = _number(body, "speed_mps", 0, MAX_SPEED_MPS, required=False)
    if speed is not None:
        ping["speed_mps"] = speed
    heading = _number(body, "heading", 0, MAX_HEADING_DEG, required=False)
    if heading is not None:
        ping["heading"] = heading
    accuracy = _number(body, "accuracy_m", 0, MAX_ACCURACY_M, required=False)
    if accuracy is not None:
        ping["accuracy_m"] = accuracy
    return ping


def check_point(body: Any, name: str) -> tuple[float, float]:
    if not isinstance(body, dict):
        raise InvalidInput(f"{name} must be an object with lat and lon", field=name)
    try:
        lat = _number(body, "lat", *LAT_RANGE, required=True)
        lon = _number(body, "lon", *LON_RANGE, required=True)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field=f"{name}.{exc.field}") from None
    assert lat is not None and lon is not None
    return lat, lon


def check_trip(
    markets: MarketMap,
    pickup: tuple[float, float],
    dropoff: tuple[float, float],
    fields: tuple[str, str],
) -> Market:
    """The market of a trip with both ends inside it and MIN_TRIP_M apart: the quote and the
    ride request refuse the same trips, each naming its own fields (pickup's, dropoff's)."""
    market = _located(markets, pickup, fields[0])
    if _located(markets, dropoff, fields[1]).id != market.id:
        raise InvalidInput("dropoff is in another market", field=fields[1])
    if haversine_m(*pickup, *dropoff) < MIN_TRIP_M:
        raise InvalidInput("pickup and dropoff are the same place", field=fields[1])
    return market


def _located(markets: MarketMap, point: tuple[float, float], field: str) -> Market:
    try:
        return markets.locate(*point)
    except OutsideServiceArea as exc:
        raise OutsideServiceArea(exc.detail, field=field) from None
