"""A driver's market with several markets: ingest records it when it accepts the ping, so a
status PUT right after the first ping lands in the ping's market. No matching-geo runs here:
the positions hashes it writes stay empty, which is the race this closes (a driver going
online in New York before its first ping was indexed used to be set available in San
Francisco, and its rides expired unoffered)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support.ingest import DOWNTOWN, Ingest, start

pytestmark = pytest.mark.integration

MIDTOWN = {"lat": 40.7580, "lon": -73.9855}


@pytest.fixture
async def two_markets(settings: Settings) -> AsyncIterator[Ingest]:
    async with start(settings.model_copy(update={"markets": "sf,nyc"})) as running:
        yield running


async def go(ingest: Ingest, driver: str, status: str = "available") -> None:
    response = await ingest.http.put(
        f"/v1/drivers/{driver}/status",
        json={"status": status},
        headers=ingest.auth("driver", driver),
    )
    assert response.status_code == 200, response.text


async def status_in(redis: aioredis.Redis, ingest: Ingest, market: str, driver: str) -> str | None:
    key = MarketKeys(market, ingest.settings.key_prefix).driver(driver)
    raw = await redis.hget(key, "status")
    return raw.decode() if isinstance(raw, bytes) else raw


async def test_a_driver_online_right_after_its_first_ping_is_online_in_the_pings_market(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    assert (await two_markets.ping("nyc-1", MIDTOWN)).status_code == 202
    await go(two_markets, "nyc-1")
    assert await status_in(redis, two_markets, "nyc", "nyc-1") == "available"
    assert await status_in(redis, two_markets, "sf", "nyc-1") is None
    view = await two_markets.http.get("/v1/drivers/nyc-1", headers=two_markets.auth("ops", "o"))
    assert view.json()["market"] == "nyc"


async def test_a_driver_that_moved_market_acts_in_the_market_of_its_last_ping(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    assert (await two_markets.ping("mover", MIDTOWN)).status_code == 202
    await go(two_markets, "mover", "offline")
    assert (await two_markets.ping("mover", DOWNTOWN)).status_code == 202
    await go(two_markets, "mover")
    assert await status_in(redis, two_markets, "sf", "mover") == "available"
    assert await status_in(redis, two_markets, "nyc", "mover") == "offline"


async def test_going_available_before_any_ping_is_a_409_saying_to_ping_first(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    response = await two_markets.http.put(
        "/v1/drivers/early/status",
        json={"status": "available"},
        headers=two_markets.auth("driver", "early"),
    )
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "status"
    assert "send a location ping" in response.json()["detail"]
    for market in ("sf", "nyc"):
        assert await status_in(redis, two_markets, market, "early") is None
    await go(two_markets, "early", "offline")  # going offline needs no market: always fine
    assert (await two_markets.ping("early", MIDTOWN)).status_code == 202
    await go(two_markets, "early")
    assert await status_in(redis, two_markets, "nyc", "early") == "available"


async def test_a_fleet_batch_records_each_drivers_market_before_its_202(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    pings = [{"driver_id": "fleet-nyc", **MIDTOWN}, {"driver_id": "fleet-sf", **DOWNTOWN}]
    response = await two_markets.http.post(
        "/v1/telemetry", json={"pings": pings}, headers=two_markets.auth("fleet", "f1")
    )
    assert response.status_code == 202, response.text
    prefix = two_markets.settings.key_prefix
    nyc, sf = MarketKeys("nyc", prefix), MarketKeys("sf", prefix)
    # each record is in its ping's market: the ping touched no other market's slot
    assert await redis.exists(nyc.driver_home("fleet-nyc"), sf.driver_home("fleet-sf")) == 2
    assert await redis.exists(sf.driver_home("fleet-nyc"), nyc.driver_home("fleet-sf")) == 0
    # the record goes with a departed driver's hash (driver_evict_s), not kept forever
    ttl = await redis.ttl(nyc.driver_home("fleet-nyc"))
    assert 0 < ttl <= two_markets.settings.driver_evict_s


async def test_with_one_market_nothing_is_recorded(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with start(settings) as ingest:
        assert (await ingest.ping("solo", DOWNTOWN)).status_code == 202
        await go(ingest, "solo")
        assert await status_in(redis, ingest, "sf", "solo") == "available"
        key = MarketKeys("sf", ingest.settings.key_prefix).driver_home("solo")
        assert await redis.exists(key) == 0
