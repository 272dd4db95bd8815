"""The fast driver.location decoder accepts and refuses exactly what the pydantic contract does."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ridepulse.contracts.events import DriverLocationV1
from ridepulse.contracts.telemetry_decode import decode_locations, decode_locations_json
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
