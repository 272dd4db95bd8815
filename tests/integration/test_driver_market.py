"""A driver's market with several markets: ingest records it when it accepts the ping, so a
status PUT right after the first ping lands in the ping's market. No matching-geo runs here:
the positions hashes it writes stay empty, which is the race this closes (a driver going
online in New York before its first ping was indexed used to be set available in San
Francisco, and its rides expired unoffered)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from ingest.batcher import TelemetryBatcher
from ingest.driver_homes import DriverHomes
from matching.geo_index import update_positions
from matching.handlers import MatchingDeps, try_offer
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping, Point
from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache
from tests.support.ingest import DOWNTOWN, SF_TRIP, Ingest, start
from tests.support.waiting import wait_until

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


async def available_in_sf(
    ingest: Ingest, redis: aioredis.Redis, driver: str
) -> tuple[MarketKeys, RideStore]:
    """`driver` pinged downtown, went available and is in sf's geo index (matching-geo does not
    run here: its update of the ping is applied directly)."""
    assert (await ingest.ping(driver, DOWNTOWN)).status_code == 202
    sf = MarketKeys("sf", ingest.settings.key_prefix)
    await update_positions(redis, sf, [Ping(driver_id=driver, ts=now_ms(), **DOWNTOWN)])
    await go(ingest, driver)
    assert await redis.zscore(sf.drivers_geo, driver) is not None
    return sf, ingest.deps.stores["sf"]


async def pinged_in_nyc(ingest: Ingest, redis: aioredis.Redis, driver: str) -> None:
    """`driver` pinged midtown, its position applied as matching-geo would."""
    assert (await ingest.ping(driver, MIDTOWN)).status_code == 202
    nyc = MarketKeys("nyc", ingest.settings.key_prefix)
    await update_positions(redis, nyc, [Ping(driver_id=driver, ts=now_ms(), **MIDTOWN)])


async def test_a_driver_that_pings_from_another_market_leaves_the_old_one(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """Seen: San Francisco kept a driver now pinging from New York available and in its geo
    index, offered it a ride there, and the driver's view (read in New York) never showed it."""
    sf, _ = await available_in_sf(two_markets, redis, "crosser")
    await pinged_in_nyc(two_markets, redis, "crosser")

    async def gone_from_sf() -> bool:
        return (
            await status_in(redis, two_markets, "sf", "crosser") == "offline"
            and await redis.zscore(sf.drivers_geo, "crosser") is None
            and await status_in(redis, two_markets, "nyc", "crosser") == "available"
        )

    # no status PUT, no view: the ping alone takes it out (ingest's background step)
    await wait_until(gone_from_sf, timeout_s=5, what="the driver out of sf after its nyc ping")
    assert await redis.exists(sf.driver_home("crosser")) == 0
    view = await two_markets.http.get(
        "/v1/drivers/crosser", headers=two_markets.auth("driver", "crosser")
    )
    # its status came along: its app still says online (see the carry test below)
    assert (view.json()["market"], view.json()["status"]) == ("nyc", "available"), view.json()


async def test_a_status_lookup_takes_the_driver_out_of_a_market_it_left(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """A move whose background step did not run (e.g. that shard was down) is made by the next
    lookup of the driver's market, which reads every market's record anyway."""
    sf, _ = await available_in_sf(two_markets, redis, "lookup")
    nyc = MarketKeys("nyc", two_markets.settings.key_prefix)
    later = int(cast(bytes, await redis.get(sf.driver_home("lookup")))) + 1
    await redis.set(nyc.driver_home("lookup"), later)  # recorded by another ingest
    await go(two_markets, "lookup", "offline")
    assert await status_in(redis, two_markets, "sf", "lookup") == "offline"
    assert await redis.zscore(sf.drivers_geo, "lookup") is None
    assert await status_in(redis, two_markets, "nyc", "lookup") == "offline"


async def test_a_driver_holding_an_offer_keeps_it_across_the_boundary(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """The rule for a driver with a ride (offered, en route, on trip) in the market it left: it
    keeps the ride there, and its view and status PUT go to that market until the ride lets it
    go; then the next lookup takes it out."""
    sf, store = await available_in_sf(two_markets, redis, "holder")
    asked = await two_markets.request_ride("rider-h", SF_TRIP, "k-holder")
    assert asked.status_code in (200, 201, 202), asked.text
    ride_id = asked.json()["ride_id"]
    ride = await store.offer(
        ride_id=ride_id, driver_id="holder", pickup_eta_s=60, offer_timeout_s=30
    )
    assert ride is not None and ride.status == "offered"
    await pinged_in_nyc(two_markets, redis, "holder")
    moves = two_markets.deps.moves
    assert moves is not None
    await moves.leave_others({"holder": "nyc"}, now_ms())  # whether or not ingest's has run
    auth = two_markets.auth("driver", "holder")
    view = (await two_markets.http.get("/v1/drivers/holder", headers=auth)).json()
    assert (view["market"], view["status"]) == ("sf", "offered"), view
    assert view["offer"]["ride_id"] == ride_id
    await store.decline(ride_id, "holder")
    assert await status_in(redis, two_markets, "sf", "holder") == "available"
    view = (await two_markets.http.get("/v1/drivers/holder", headers=auth)).json()
    assert (view["market"], view["status"]) == ("nyc", "available"), view  # carried over
    assert await status_in(redis, two_markets, "sf", "holder") == "offline"
    assert await redis.zscore(sf.drivers_geo, "holder") is None


async def test_a_driver_that_pinged_the_old_market_again_since_stays_there(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """A late leave step loses to a newer record in the market it would take the driver out of:
    a driver that came back is not set offline there."""
    sf, store = await available_in_sf(two_markets, redis, "back")
    recorded = int(cast(bytes, await redis.get(sf.driver_home("back"))))
    assert (await store.leave_market(["back"], moved_at_ms=recorded)).carried == []
    assert await status_in(redis, two_markets, "sf", "back") == "available"
    assert await redis.zscore(sf.drivers_geo, "back") is not None
    assert (await store.leave_market(["back"], moved_at_ms=recorded + 1)).carried == ["back"]
    assert await status_in(redis, two_markets, "sf", "back") == "offline"
    left = await store.leave_market(["back"], moved_at_ms=recorded + 1)  # idempotent
    assert (left.kept, left.carried) == ([], [])
    entries: Any = await redis.xrange(sf.rides)
    events = [f for _, f in entries if f[b"subject"] == b"driver/back"]
    assert [orjson.loads(f[b"data"])["status"] for f in events] == ["available", "offline"]


async def test_an_available_driver_that_moves_market_is_offered_rides_in_the_new_one(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """Seen: sf set a driver that now pinged from New York offline, New York had no status for
    it, and nothing told its app (still online): no market offered it a ride until its next
    status PUT. Its status is carried: available in New York, indexed there when matching-geo
    applies its first New York ping."""
    await available_in_sf(two_markets, redis, "carrier")
    assert (await two_markets.ping("carrier", MIDTOWN)).status_code == 202  # not applied yet

    async def available_in_nyc() -> bool:
        return await status_in(redis, two_markets, "nyc", "carrier") == "available"

    await wait_until(available_in_nyc, timeout_s=5, what="the driver available in nyc")
    assert await status_in(redis, two_markets, "sf", "carrier") == "offline"
    nyc = MarketKeys("nyc", two_markets.settings.key_prefix)
    await update_positions(redis, nyc, [Ping(driver_id="carrier", ts=now_ms(), **MIDTOWN)])
    assert await redis.zscore(nyc.drivers_geo, "carrier") is not None

    store = two_markets.deps.stores["nyc"]
    speeds = SpeedCache(redis, nyc.speeds, two_markets.settings.h3_resolution)
    await speeds.refresh()
    deps = MatchingDeps(
        redis=redis, settings=two_markets.settings, stores={"nyc": store}, speeds={"nyc": speeds}
    )
    ride, _ = await store.request_ride(
        ride_id="nyc-carried",
        rider_id="rider-c",
        pickup=Point(lat=MIDTOWN["lat"] + 0.002, lon=MIDTOWN["lon"]),
        dropoff=Point(lat=MIDTOWN["lat"] + 0.02, lon=MIDTOWN["lon"]),
        deadline_s=60,
    )
    offered = await try_offer(deps, ride, "cause-nyc-carried")
    assert offered is not None and offered.offer_driver_id == "carrier", offered


async def test_a_carried_status_never_overrides_a_newer_one(
    two_markets: Ingest, redis: aioredis.Redis
) -> None:
    """The carry is a step after the leave: a PUT offline reaching the new market between the
    two wins."""
    _, sf_store = await available_in_sf(two_markets, redis, "racer")
    sf = MarketKeys("sf", two_markets.settings.key_prefix)
    moved_at = int(cast(bytes, await redis.get(sf.driver_home("racer")))) + 1
    left = await sf_store.leave_market(["racer"], moved_at_ms=moved_at)
    assert left.carried == ["racer"]
    await two_markets.deps.stores["nyc"].set_driver_status("racer", "offline")
    moves = two_markets.deps.moves
    assert moves is not None
    await moves.carry({"racer": ("nyc", left.left_at_ms)})
    assert await status_in(redis, two_markets, "nyc", "racer") == "offline"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_only_a_record_written_in_a_new_market_runs_leave_steps(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """Seen: every record write queued leave steps in every other market, the routine rewrite
    every TTL/2 and every driver's first write after an ingest restart: after a restart they
    filled the queue (1,000) and real moves were dropped."""
    clock = Clock()
    homes = DriverHomes(settings.key_prefix, ["sf", "nyc"], ttl_s=600, clock=clock)
    told: list[dict[str, str]] = []
    batcher = TelemetryBatcher(
        redis, source="test", maxlen=100, homes=homes, moved=lambda h, _ms: told.append(h)
    )
    stream = f"{settings.key_prefix}:moves-test"
    ping = {"driver_id": "stayer", "ts": now_ms(), **MIDTOWN}
    await batcher.submit(stream, [ping], "nyc")  # a driver this process has not written yet
    clock.now += 301  # past TTL/2: its record is rewritten, in the same market
    await batcher.submit(stream, [ping], "nyc")
    nyc = MarketKeys("nyc", settings.key_prefix)
    assert await redis.exists(nyc.driver_home("stayer")) == 1
    assert told == []
    await batcher.submit(stream, [{**ping, **DOWNTOWN}], "sf")
    assert told == [{"stayer": "sf"}]
