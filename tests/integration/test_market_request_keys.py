"""Every key a market's request touches is in that market's slot (the market is the hash tag:
DESIGN, docs/scaling.md), so on a cluster a nyc request never waits on sf's shard, nor on a shard
of global keys. Seen live: the rider's minute counter, the cross-market Idempotency-Key claim and
the driver's market record had no tag; killing sf's primary failed nyc ride requests, freezing it
held nyc quotes for seconds.

Every command ingest packs while it answers the request is recorded (a context variable marks
the request's task and the tasks it starts, such as the telemetry group commit; the background
loops started before it are not marked), and the server names each command's keys
(COMMAND GETKEYS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from ridepulse.redis_client import HiredisPackingConnection
from ridepulse.settings import Settings
from tests.support.ingest import Ingest, start

pytestmark = pytest.mark.integration

MIDTOWN = {"lat": 40.7580, "lon": -73.9855}
NYC_TRIP = {"pickup": MIDTOWN, "dropoff": {"lat": 40.7680, "lon": -73.9755}}
NYC_SLOT = key_slot(b"{nyc}")
SENT: ContextVar[list[tuple[Any, ...]] | None] = ContextVar("sent", default=None)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection of this process notes the commands it packs while SENT is set."""
    for kind in (AbstractConnection, HiredisPackingConnection):
        monkeypatch.setattr(kind, "pack_command", noting(kind.pack_command))


def noting(pack: Callable[..., Any]) -> Callable[..., Any]:
    def note_and_pack(self: AbstractConnection, *args: Any) -> Any:
        sent = SENT.get()
        if sent is not None:
            sent.append(args)
        return pack(self, *args)

    return note_and_pack


@pytest.fixture
async def two_markets(settings: Settings, recorded: None) -> AsyncIterator[Ingest]:
    async with start(settings.model_copy(update={"markets": "sf,nyc"})) as running:
        yield running


async def keys_sent(
    redis: aioredis.Redis, request: Awaitable[httpx.Response], status: int
) -> list[str]:
    """The keys of every command sent to answer `request`, which must answer `status`."""
    sent: list[tuple[Any, ...]] = []
    token = SENT.set(sent)
    try:
        response = await request
    finally:
        SENT.reset(token)
    assert response.status_code == status, response.text
    keys: list[str] = []
    for args in sent:
        try:
            found: Any = await redis.command_getkeys(*args)
        except ResponseError:  # a command without keys: TIME, WAITAOF, SCRIPT LOAD, PING, ...
            continue
        keys += [k.decode() if isinstance(k, bytes) else str(k) for k in found]
    assert keys, f"no keyed command recorded for a {status}: {sent}"
    return keys


def off_slot(keys: list[str]) -> list[str]:
    return sorted({key for key in keys if key_slot(key.encode()) != NYC_SLOT})


async def test_a_markets_ping_quote_ride_request_read_and_cancel_touch_only_its_slot(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    ingest, rider = two_markets, two_markets.auth("rider", "nyc-rider")
    ping = ingest.ping("nyc-driver", MIDTOWN)  # the first: its market record is written too
    assert off_slot(await keys_sent(redis, ping, 202)) == []

    params = {
        "pickup_lat": MIDTOWN["lat"],
        "pickup_lon": MIDTOWN["lon"],
        "dropoff_lat": 40.7680,
        "dropoff_lon": -73.9755,
    }
    quote = ingest.http.get("/v1/quote", params=params, headers=rider)
    assert off_slot(await keys_sent(redis, quote, 200)) == []
    quote_id = (await ingest.http.get("/v1/quote", params=params, headers=rider)).json()["quote_id"]

    headers = {**rider, "Idempotency-Key": "nyc-trip-1"}
    body = {**NYC_TRIP, "quote_id": quote_id}
    request = ingest.http.post("/v1/rides", json=body, headers=headers)
    assert off_slot(await keys_sent(redis, request, 202)) == []
    replay = ingest.http.post("/v1/rides", json=body, headers=headers)
    assert off_slot(await keys_sent(redis, replay, 202)) == []
    ride_id = (await ingest.http.post("/v1/rides", json=body, headers=headers)).json()["ride_id"]

    read = ingest.http.get(f"/v1/rides/{ride_id}", headers=rider)
    assert off_slot(await keys_sent(redis, read, 200)) == []
    cancel = ingest.http.post(f"/v1/rides/{ride_id}/cancel", headers=rider)
    assert off_slot(await keys_sent(redis, cancel, 200)) == []

    unquoted = ingest.http.post(  # no quote: the pickup's surge is read instead
        "/v1/rides", json=NYC_TRIP, headers={**rider, "Idempotency-Key": "nyc-trip-2"}
    )
    assert off_slot(await keys_sent(redis, unquoted, 202)) == []
