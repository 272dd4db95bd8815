"""Ingest's input limits at their boundaries, through the HTTP API in process against the real
embedded server (docs/architecture.md, "Input limits"): a ping's `ts` at most 5 s ahead and
5 min old (ingest/validation.py, both ends inclusive, against the server's wall clock), 4 KiB
per ping body and 4 MiB per batch body (413 past either, nothing written)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from ingest.deps import MAX_BODY_BYTES
from ingest.routes_telemetry import PING_BODY_LIMIT
from ingest.validation import FUTURE_TOLERANCE_MS, MAX_AGE_MS
from ridepulse.settings import Settings
from tests.support.ingest import (
    DOWNTOWN,
    Ingest,
    pings_in,
    start,
    telemetry,
)

pytestmark = pytest.mark.integration

# One second either side of each bound: far more than the time between the test reading the
# clock and the route reading it, far less than the bound itself.
MARGIN_MS = 1_000
AHEAD_OK, AHEAD_REFUSED = FUTURE_TOLERANCE_MS - MARGIN_MS, FUTURE_TOLERANCE_MS + MARGIN_MS
OLD_OK, OLD_REFUSED = -(MAX_AGE_MS - MARGIN_MS), -(MAX_AGE_MS + MARGIN_MS)
JSON = {"Content-Type": "application/json"}


def test_the_bounds_are_the_documented_ones() -> None:
    """docs/architecture.md: "timestamps at most 5 s ahead and 5 min old", "4 KiB per ping,
    4 MiB per batch"; the boundary tests below derive their values from these constants."""
    assert (FUTURE_TOLERANCE_MS, MAX_AGE_MS) == (5_000, 300_000)
    assert (PING_BODY_LIMIT, MAX_BODY_BYTES) == (4 * 1024, 4 * 1024 * 1024)
    assert (AHEAD_OK, AHEAD_REFUSED, OLD_OK, OLD_REFUSED) == (4_000, 6_000, -299_000, -301_000)


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with start(settings) as running:
        yield running


def now_ms() -> int:
    return int(time.time() * 1000)


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes, grown by a field no reader looks at."""
    bare = orjson.dumps({**body, "pad": ""})
    raw = orjson.dumps({**body, "pad": "x" * (size - len(bare))})
    assert len(raw) == size, (len(raw), size)
    return raw


async def chunks(raw: bytes) -> AsyncIterator[bytes]:
    """A body sent without Content-Length (chunked): only the bytes read can be counted."""
    for i in range(0, len(raw), 1024):
        yield raw[i : i + 1024]


# a ping's timestamp


@pytest.mark.parametrize(
    ("offset_ms", "status"),
    [(AHEAD_OK, 202), (AHEAD_REFUSED, 422), (OLD_OK, 202), (OLD_REFUSED, 422)],
    ids=["4s-ahead-accepted", "6s-ahead-refused", "299s-old-accepted", "301s-old-refused"],
)
async def test_a_pings_ts_is_accepted_up_to_5s_ahead_and_5min_old_and_refused_past_either(
    ingest: Ingest, redis: aioredis.Redis, offset_ms: int, status: int
) -> None:
    ts = now_ms() + offset_ms
    response = await ingest.ping("d1", {**DOWNTOWN, "ts": ts})
    assert response.status_code == status, f"ts {offset_ms:+} ms: {response.text}"
    written = await pings_in(redis, telemetry(ingest.settings))
    if status == 202:
        assert [p["ts"] for p in written] == [ts], written
    else:
        body = response.json()
        assert (body["error"], body["field"]) == ("invalid_input", "ts"), body
        assert written == [], f"a refused ping was written: {written}"


async def test_a_batch_of_pings_at_the_ts_bounds_is_accepted_whole(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    """Every item valid: the batch takes the fast path (ingest/fast_batch.py), which checks
    the same bounds over the whole column."""
    now = now_ms()
    pings = [
        {"driver_id": "ahead", **DOWNTOWN, "ts": now + AHEAD_OK},
        {"driver_id": "old", **DOWNTOWN, "ts": now + OLD_OK},
    ]
    response = await ingest.http.post(
        "/v1/telemetry", json={"pings": pings}, headers=ingest.auth("fleet", "f1")
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": 0, "errors": []}
    written = await pings_in(redis, telemetry(ingest.settings))
    assert sorted((p["driver_id"], p["ts"]) for p in written) == [
        ("ahead", now + AHEAD_OK),
        ("old", now + OLD_OK),
    ]


async def test_a_batch_reports_each_ping_past_a_ts_bound_by_index_and_keeps_the_rest(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    now = now_ms()
    pings = [
        {"driver_id": "ahead-ok", **DOWNTOWN, "ts": now + AHEAD_OK},
        {"driver_id": "ahead-bad", **DOWNTOWN, "ts": now + AHEAD_REFUSED},
        {"driver_id": "old-ok", **DOWNTOWN, "ts": now + OLD_OK},
        {"driver_id": "old-bad", **DOWNTOWN, "ts": now + OLD_REFUSED},
    ]
    response = await ingest.http.post(
        "/v1/telemetry", json={"pings": pings}, headers=ingest.auth("fleet", "f1")
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2), body
    assert [(e["index"], e["field"], e["reason"]) for e in body["errors"]] == [
        (1, "ts", "ts is in the future"),
        (3, "ts", "ts is more than 5 minutes old"),
    ], body
    written = await pings_in(redis, telemetry(ingest.settings))
    assert sorted(p["driver_id"] for p in written) == ["ahead-ok", "old-ok"]


# body sizes


@pytest.mark.parametrize("sent", ["with-content-length", "chunked"])
async def test_a_ping_body_of_4_kib_is_accepted_and_one_byte_more_is_a_413(
    ingest: Ingest, redis: aioredis.Redis, sent: str
) -> None:
    stream = telemetry(ingest.settings)
    headers = {**ingest.auth("driver", "d1"), **JSON}

    async def post(raw: bytes) -> httpx.Response:
        content = raw if sent == "with-content-length" else chunks(raw)
        return await ingest.http.post("/v1/drivers/d1/location", content=content, headers=headers)

    at_limit = await post(padded(DOWNTOWN, PING_BODY_LIMIT))
    assert at_limit.status_code == 202, at_limit.text
    assert len(await pings_in(redis, stream)) == 1

    over = await post(padded(DOWNTOWN, PING_BODY_LIMIT + 1))
    assert over.status_code == 413, over.text
    assert over.json()["error"] == "payload_too_large", over.text
    assert len(await pings_in(redis, stream)) == 1, "the oversized ping was written"


@pytest.mark.parametrize("sent", ["with-content-length", "chunked"])
async def test_a_batch_body_of_4_mib_is_accepted_and_one_byte_more_is_a_413_writing_nothing(
    ingest: Ingest, redis: aioredis.Redis, sent: str
) -> None:
    """Both bodies are valid batches of one ping (padded by a field the decoder ignores): only
    their size decides."""
    stream = telemetry(ingest.settings)
    headers = {**ingest.auth("fleet", "f1"), **JSON}

    def batch(driver: str, size: int) -> bytes:
        ping = {"driver_id": driver, **DOWNTOWN}
        bare = orjson.dumps({"pings": [{**ping, "pad": ""}]})
        raw = orjson.dumps({"pings": [{**ping, "pad": "x" * (size - len(bare))}]})
        assert len(raw) == size, (len(raw), size)
        return raw

    async def post(raw: bytes) -> httpx.Response:
        content = raw if sent == "with-content-length" else chunks(raw)
        return await ingest.http.post("/v1/telemetry", content=content, headers=headers)

    over = await post(batch("over", MAX_BODY_BYTES + 1))
    assert over.status_code == 413, over.text[:300]
    assert over.json()["error"] == "payload_too_large", over.text[:300]
    assert await redis.exists(stream) == 0, "an oversized batch wrote to the telemetry stream"

    at_limit = await post(batch("at-limit", MAX_BODY_BYTES))
    assert at_limit.status_code == 202, at_limit.text[:300]
    assert at_limit.json() == {"accepted": 1, "rejected": 0, "errors": []}
    assert [p["driver_id"] for p in await pings_in(redis, stream)] == ["at-limit"]
