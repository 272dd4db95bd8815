"""The fast driver.location decoder accepts and refuses exactly what the pydantic contract does."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ridepulse.contracts.events import DriverLocationV1
from ridepulse.contracts.registry import decode, make
from ridepulse.contracts.telemetry_decode import (
    STREAM_FUTURE_TOLERANCE_MS,
    decode_locations,
    decode_locations_json,
)
from ridepulse.errors import InvalidEvent

FIELDS = ("driver_id", "lat", "lon", "ts", "speed_mps", "heading", "accuracy_m")


def _random_ping(rng: random.Random) -> dict[str, Any]:
    ping: dict[str, Any] = {
        "driver_id": f"d{rng.randrange(10_000)}",
        "lat": rng.choice([rng.uniform(-95, 95), 37.77, 90, -90]),
        "lon": rng.choice([rng.uniform(-185, 185), -122.41, 180, -180]),
        "ts": rng.choice([1_700_000_000_000 + rng.randrange(10**6), 5]),
    }
    for optional in ("speed_mps", "heading", "accuracy_m"):
        if rng.random() < 0.5:
            ping[optional] = rng.choice([rng.uniform(0, 40), None, 3])
    if rng.random() < 0.05:
        ping["extra"] = "ignored"
    if rng.random() < 0.03:
        del ping[rng.choice(["driver_id", "lat", "lon", "ts"])]
    if rng.random() < 0.03:
        ping["lat"] = "north"
    return ping


def _pydantic(data: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    try:
        pings = DriverLocationV1.model_validate(data).pings
    except ValidationError:
        return None
    return [tuple(getattr(p, f) for f in FIELDS) for p in pings]


def _rows(decode: Callable[[], DriverLocationV1]) -> list[tuple[Any, ...]] | None:
    try:
        pings = decode().pings
    except InvalidEvent:
        return None
    return [tuple(getattr(p, f) for f in FIELDS) for p in pings]


def _fast(data: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    """Both fast paths, from the dict and from the JSON bytes; they must agree."""
    from_dict = _rows(lambda: decode_locations(data))
    assert _rows(lambda: decode_locations_json(orjson.dumps(data))) == from_dict, data
    return from_dict


def test_both_decoders_agree_on_seeded_random_batches() -> None:
    rng = random.Random(20261204)
    refused = 0
    for _ in range(2_000):
        data = {"pings": [_random_ping(rng) for _ in range(rng.randrange(1, 4))]}
        expected = _pydantic(data)
        assert _fast(data) == expected, data
        refused += expected is None
    assert 0 < refused < 2_000  # both outcomes were exercised


@pytest.mark.parametrize(
    "data",
    [{}, {"pings": "x"}, {"pings": [{"driver_id": 1, "lat": 0, "lon": 0, "ts": 1}]}],
)
def test_malformed_payloads_are_refused_with_a_reason(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent, match=r"driver\.location v1"):
        decode_locations(data)
    with pytest.raises(InvalidEvent, match=r"driver\.location v1"):
        decode_locations_json(orjson.dumps(data))
    with pytest.raises(ValidationError):
        DriverLocationV1.model_validate(data)


def test_bytes_that_are_not_json_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidEvent, match="data is not JSON"):
        decode_locations_json(b'{"pings": [')


APPENDED_MS = 1_796_000_000_000


def _stamps(fields: dict[bytes, bytes], appended_ms: int | None = None) -> list[int]:
    data = decode(fields, "sf", appended_ms).data
    assert isinstance(data, DriverLocationV1)
    return [ping.ts for ping in data.pings]


def _entry(*stamps: int, v: bytes = b"1") -> dict[bytes, bytes]:
    pings = [
        {"driver_id": f"d{i}", "lat": 37.7, "lon": -122.4, "ts": ts} for i, ts in enumerate(stamps)
    ]
    fields = make("driver.location", "fleet", {"pings": []}, "test").to_fields()
    return fields | {b"data": orjson.dumps({"pings": pings}), b"v": v}


@pytest.mark.parametrize("v", [b"1", b"01"])  # the fast path and the envelope's
def test_a_ping_stamped_past_the_tolerance_after_its_entry_is_refused(v: bytes) -> None:
    """A minute past the entry's id time (the API's 5 s and room for an ingest clock ahead of
    the server's): a ping a day (or the largest int64) ahead, written straight into the stream,
    would freeze its driver's position."""
    limit = APPENDED_MS + STREAM_FUTURE_TOLERANCE_MS
    assert _stamps(_entry(APPENDED_MS, limit, v=v), APPENDED_MS) == [APPENDED_MS, limit]
    for ahead in (limit + 1, APPENDED_MS + 86_400_000, 2**63 - 1):
        with pytest.raises(InvalidEvent, match=r"pings\.1\.ts: .* more than 60 s after the entry"):
            decode(_entry(APPENDED_MS, ahead, v=v), "sf", APPENDED_MS)
    # without the entry's time (a replay's check, pricing's window) the payload rules alone
    assert _stamps(_entry(APPENDED_MS, limit + 1, v=v)) == [APPENDED_MS, limit + 1]
