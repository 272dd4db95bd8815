"""README (RIDEPULSE_DRIVER_LOST_S), docs/architecture.md: the platform's own deafness is not a
driver's silence. A platform restart, a janitor restart or a frozen Redis let no ping in, and no
telemetry group lags meanwhile: only the heard-until stamp the janitor keeps in Redis shows it
(ridepulse/heard_until.py). Before it, the first sweep after 126 s down released every ride and
took every driver offline, 2.4 s before the API could take their pings.

Against the real server; the frozen one is a server of this test alone (SIGSTOP, as
test_frozen_redis.py does). DRIVER_LOST_S is 2 s and the janitor sweeps every 0.2 s, so a pause
of over 0.6 s in its passes is unheard."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.testing import capture_logs

from ridepulse.janitor import sweep_drivers_once
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.rides import RideStore
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from ridepulse.unheard import UnheardTimes
from tests.integration.test_janitor_memory import ping, ride_with_driver, tuned
from tests.support.frozen import frozen
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

LOST_MS = 2_000
DOWN_MS = 3_000  # longer than DRIVER_LOST_S
NOTHING = {"rides_released": 0, "drivers_evicted": 0}


def quick(settings: Settings) -> Settings:
    return tuned(
        settings, driver_lost_s=LOST_MS / 1000, driver_evict_s=3600, driver_sweep_interval_s=0.2
    )


async def sweep_until_released(
    redis: aioredis.Redis, settings: Settings, unheard: dict[str, UnheardTimes], *pinging: str
) -> int:
    """Sweep every interval, as the janitor does, the `pinging` drivers pinging before each
    pass, until a ride is released; returns the server time it was."""
    keys = MarketKeys("sf", settings.key_prefix)

    async def released() -> int:
        for driver in pinging:
            await ping(redis, keys, driver)
        swept = await sweep_drivers_once(redis, settings, "janitor-2", unheard)
        return await server_time_ms(redis) if swept["rides_released"] else 0

    return await wait_until(
        released,
        timeout_s=15,
        interval_s=settings.driver_sweep_interval_s,
        what="the silent driver's ride to be released",
    )


async def test_a_driver_pinging_right_after_a_janitor_restart_keeps_its_ride(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """The janitor (with the platform, say) is down longer than DRIVER_LOST_S and starts again
    with no memory: its first pass, before any driver could reach the API, takes nothing; a
    driver that pings then keeps its ride, and one that stays silent is lost DRIVER_LOST_S
    after the restart, not at once."""
    fast = quick(settings)
    await ride_with_driver(redis, store, "started", ride_id="sf-r1", driver="d1")
    await ride_with_driver(redis, store, "matched", ride_id="sf-r2", driver="d2")
    assert await sweep_drivers_once(redis, fast, "janitor-1", {}) == NOTHING
    stopped_ms = await server_time_ms(redis)

    async def down_long_enough() -> bool:
        return await server_time_ms(redis) > stopped_ms + DOWN_MS

    await wait_until(down_long_enough, timeout_s=10, what="the janitor's downtime")
    restarted: dict[str, UnheardTimes] = {}  # a new process: nothing in memory
    with capture_logs() as logs:
        first = await sweep_drivers_once(redis, fast, "janitor-2", restarted)
    restarted_ms = await server_time_ms(redis)
    assert first == NOTHING, f"the first pass after {DOWN_MS} ms down took {first}"
    assert [e["market"] for e in logs if e["event"] == "janitor.platform_unheard"] == ["sf"], logs

    released_ms = await sweep_until_released(redis, fast, restarted, "d1")
    heard_for_ms = released_ms - restarted_ms
    assert heard_for_ms >= LOST_MS - 300, f"d2 released {heard_for_ms} ms after the restart"
    kept, lost = await store.get("sf-r1"), await store.get("sf-r2")
    assert kept is not None and (kept.status, kept.driver_id) == ("started", "d1"), kept
    assert lost is not None and (lost.status, lost.driver_id) == ("requested", None), lost
    d1 = await store.get_driver("d1")
    assert d1 is not None and d1.status == "on_trip", d1


@pytest.fixture
async def own_redis(own_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    # a janitor's pass against a frozen server fails within half a second, then is retried
    client = aioredis.Redis.from_url(own_server.url, socket_timeout=0.5, protocol=2)
    yield client
    await client.aclose()


async def test_a_driver_pinging_right_after_redis_was_frozen_keeps_its_ride(
    own_server: EmbeddedRedis, own_redis: aioredis.Redis, settings: Settings
) -> None:
    """Redis frozen (or cut off) longer than DRIVER_LOST_S: every ping got a 503, the janitor's
    passes failed. Its first pass once Redis answers again takes nothing; the driver's ping
    right after keeps the ride."""
    fast = quick(settings.model_copy(update={"redis_url": own_server.url}))
    keys = MarketKeys("sf", fast.key_prefix)
    store = RideStore(own_redis, keys, "test")
    await ride_with_driver(own_redis, store, "started", ride_id="sf-r1", driver="d1")
    unheard: dict[str, UnheardTimes] = {}
    assert await sweep_drivers_once(own_redis, fast, "janitor-1", unheard) == NOTHING
    frozen_at = time.monotonic()

    async def frozen_long_enough() -> bool:
        with pytest.raises((RedisTimeoutError, RedisConnectionError)):
            await sweep_drivers_once(own_redis, fast, "janitor-1", unheard)
        return time.monotonic() - frozen_at > DOWN_MS / 1000

    with frozen(own_server):
        await wait_until(frozen_long_enough, timeout_s=15, what="Redis frozen past the lost time")
    first = await sweep_drivers_once(own_redis, fast, "janitor-1", unheard)
    assert first == NOTHING, f"the first pass after Redis came back took {first}"

    async def heard_past_the_lost_time() -> bool:
        await ping(own_redis, keys, "d1")
        swept = await sweep_drivers_once(own_redis, fast, "janitor-1", unheard)
        assert swept == NOTHING, f"a driver pinging every pass lost its ride: {swept}"
        return time.monotonic() - frozen_at > (DOWN_MS + LOST_MS) / 1000 + 0.5

    await wait_until(heard_past_the_lost_time, timeout_s=15, interval_s=0.2, what="pinging")
    ride = await store.get("sf-r1")
    assert ride is not None and (ride.status, ride.driver_id) == ("started", "d1"), ride


async def test_a_driver_silent_while_the_platform_hears_is_lost_on_time(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """The rule leaves the plain case alone: the janitor sweeping all along, a silent driver's
    ride is taken back DRIVER_LOST_S after its last ping, with nothing counted unheard."""
    fast = quick(settings)
    await ride_with_driver(redis, store, "started", ride_id="sf-r1", driver="d1")
    seen = await redis.zscore(keys.drivers_seen, "d1")
    assert seen is not None
    unheard: dict[str, UnheardTimes] = {}
    with capture_logs() as logs:
        released_ms = await sweep_until_released(redis, fast, unheard)
    silent_ms = released_ms - int(seen)
    assert LOST_MS <= silent_ms < LOST_MS + 2_000, f"released after {silent_ms} ms of silence"
    assert not [e for e in logs if e["event"] == "janitor.platform_unheard"], logs
    assert await redis.zcard(keys.drivers_unheard) == 0
    ride = await store.get("sf-r1")
    assert ride is not None and (ride.status, ride.cancelled_by) == ("cancelled", "ops"), ride
