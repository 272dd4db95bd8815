"""Deterministic drivers, pings and telemetry entries for the figures (seeded, so runs compare).

`entry_fields` builds a stream entry exactly as ingest's batcher does (the eight envelope fields,
`data` = {"pings": [...]}), so the Redis-floor peer and the consumer pre-fill use the same shape;
`telemetry_request` is the fleet's POST /v1/telemetry, as the end-to-end figures send it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from loadtests.bench import loadgen
from ridepulse.contracts.envelope import new_event_id, now_ms
from ridepulse.markets import BBox, load_markets


def service_box(margin: float = 0.005, market: str | None = None) -> BBox:
    """A market's box (the default market's by default), shrunk a little so jittered points
    stay inside it."""
    found = load_markets(only="all").get(market) if market else load_markets().default
    b = found.bbox
    return BBox(b.min_lat + margin, b.min_lon + margin, b.max_lat - margin, b.max_lon - margin)


def driver_id(index: int) -> str:
    return f"bd{index:07d}"


# The R2 low-discrepancy sequence: driver i's home depends on i alone (no RNG state to replay),
# and any range of drivers covers the market evenly.
_R2_A1 = 0.7548776662466927
_R2_A2 = 0.5698402909980532


def home_point(index: int, box: BBox) -> tuple[float, float]:
    u, v = (0.5 + _R2_A1 * index) % 1.0, (0.5 + _R2_A2 * index) % 1.0
    lat_span, lon_span = box.max_lat - box.min_lat, box.max_lon - box.min_lon
    return box.min_lat + u * lat_span, box.min_lon + v * lon_span


def random_point(rng: random.Random, box: BBox | None = None) -> tuple[float, float]:
    area = box or service_box()
    return (
        round(rng.uniform(area.min_lat, area.max_lat), 6),
        round(rng.uniform(area.min_lon, area.max_lon), 6),
    )


def pings(
    first: int,
    count: int,
    *,
    ts: int | None,
    step: int = 0,
    with_id: bool = True,
    market: str | None = None,
    ids: Callable[[int], str] = driver_id,
) -> list[dict[str, Any]]:
    """Pings of drivers first..first+count-1 (named by `ids`) in `market` (the default one when
    None); `step` moves each ~30 m north-east per step."""
    box = service_box(margin=0.01, market=market)
    drift = (step % 8) * 0.0002  # stays well inside the 0.01° margin
    out: list[dict[str, Any]] = []
    for index in range(first, first + count):
        lat, lon = home_point(index, box)
        ping: dict[str, Any] = {"driver_id": ids(index)} if with_id else {}
        ping.update(
            lat=round(lat + drift, 6), lon=round(lon + drift, 6), speed_mps=8.5, heading=45.0
        )
        if ts is not None:
            ping["ts"] = ts
        out.append(ping)
    return out


def telemetry_request(
    first: int,
    count: int,
    *,
    token: str,
    port: int,
    ts: int,
    step: int = 0,
    market: str | None = None,
    ids: Callable[[int], str] = driver_id,
) -> bytes:
    """POST /v1/telemetry with one ping of each of drivers first..first+count-1 (see `pings`)."""
    body = orjson.dumps({"pings": pings(first, count, ts=ts, step=step, market=market, ids=ids)})
    return loadgen.build_request("POST", "/v1/telemetry", token=token, body=body, port=port)


def entry_fields(batch: list[dict[str, Any]]) -> dict[bytes, bytes]:
    """One telemetry entry carrying `batch` (validated pings with driver_id and ts)."""
    return {
        b"id": new_event_id().encode(),
        b"type": b"driver.location",
        b"v": b"1",
        b"source": b"bench/fleet",
        b"time": str(now_ms()).encode(),
        b"subject": b"fleet/batch",
        b"data": orjson.dumps({"pings": batch}),
        b"traceparent": b"",
    }
