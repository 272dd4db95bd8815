"""A market's slot moved to another primary by the operator's procedure (docs/scaling.md) while
a consumer runs and riders of both markets keep asking. Seen live: redis-py's cluster client gave
up following TRYAGAIN/ASK with ClusterError("TTL exhausted."), which no code took for passing
trouble: every consumer service exited (31 deaths in a 40 s migration) and handlers dead-lettered
valid events; and each 5th MOVED closed every connection of the client, failing the other
market's requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot
from redis.exceptions import RedisError

from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.producer import Producer
from ridepulse.cluster import LocalCluster
from ridepulse.contracts.registry import Event
from ridepulse.redis_client import connect
from tests.support.bus import expired_events, runtime
from tests.support.ingest import SF_TRIP, start
from tests.support.settings import quick_bus_settings
from tests.support.slot_migration import migrate_slot
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NYC_TRIP = {
    "pickup": {"lat": 40.7580, "lon": -73.9855},
    "dropoff": {"lat": 40.7680, "lon": -73.9755},
}
FILLER_KEYS = 400  # keys of sf's slot: 80 batches of 5, 0.1 s apart, the move takes ~10 s


async def handled_count(redis: Any, at_least: int) -> bool:
    return int(await redis.get("rp:{sf}:test-progress") or 0) >= at_least


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster", primaries=3, replicas=0).start()
    yield local
    local.stop()


@pytest.mark.timeout(120)
async def test_moving_a_markets_slot_ends_no_consumer_and_leaves_the_other_market_served(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = quick_bus_settings(
        redis_url=cluster.url,
        key_prefix="rp",
        markets="sf,nyc",
        data_dir=tmp_path,
        secret="test-secret-not-for-production-0123456789",
    )
    redis: Any = connect(settings)
    await redis.initialize()
    slot = key_slot(b"{sf}")
    source = int(redis.get_node_from_key("{sf}").port)
    nyc_port = int(redis.get_node_from_key("{nyc}").port)
    primaries = [int(n.port) for n in redis.get_primaries()]
    target = next(p for p in primaries if p not in (source, nyc_port))
    filler = redis.pipeline(transaction=False)
    for i in range(FILLER_KEYS):
        filler.set(f"rp:{{sf}}:filler:{i}", i)
    await filler.execute()

    # two keys of the slot in one script, as the ride steps are: TRYAGAIN while one has moved
    # and the other has not
    effect = redis.register_script(
        "redis.call('SET', KEYS[1], 1) return redis.call('INCR', KEYS[2])"
    )

    async def handled(event: Event, deps: Any) -> None:
        await effect(keys=[f"rp:{{sf}}:test-effect:{uuid.uuid4()}", "rp:{sf}:test-progress"])

    consumer = runtime(
        redis,
        settings,
        HandlerTable(per_event={"ride.requested": handled, "ride.expired": handled}),
        burst=False,
    )
    producer = Producer(redis, telemetry_maxlen=10_000)
    published = 0

    async def publish_while(migration: asyncio.Task[int]) -> None:
        """Events for the consumer all through the move, whether or not sf takes rides."""
        nonlocal published
        for event in expired_events(10_000):
            if migration.done():
                return
            with contextlib.suppress(RedisError):  # the old client's redirect trouble
                await producer.publish("rp:{sf}:rides", event)
                published += 1
            await asyncio.sleep(0.02)  # a steady trickle, not a wait on a condition

    consuming = asyncio.create_task(consumer.run())
    accepted: list[tuple[str, str]] = []  # (rider, ride id) of every 202
    sf_codes: list[int] = []
    nyc_failures: list[str] = []
    nyc_served = 0
    try:
        async with start(settings) as ingest:
            migration = asyncio.create_task(
                asyncio.to_thread(
                    migrate_slot,
                    slot,
                    source,
                    target,
                    primaries,
                    cluster.nodes[0].password,
                    batch=5,
                    pause_s=0.1,
                )
            )
            publishing = asyncio.create_task(publish_while(migration))
            started = time.monotonic()
            n = 0
            while not migration.done() or n < 10:
                n += 1
                sf_rider, nyc_rider = f"mig-sf-{n}", f"mig-nyc-{n}"
                sf_answer, nyc_ride, nyc_quote = await asyncio.gather(
                    ingest.request_ride(sf_rider, SF_TRIP, str(uuid.uuid4())),
                    ingest.request_ride(nyc_rider, NYC_TRIP, str(uuid.uuid4())),
                    ingest.quote(nyc_rider, NYC_TRIP["pickup"], NYC_TRIP["dropoff"]),
                )
                sf_codes.append(sf_answer.status_code)
                for rider, answer in ((sf_rider, sf_answer), (nyc_rider, nyc_ride)):
                    if answer.status_code == 202:
                        accepted.append((rider, answer.json()["ride_id"]))
                for what, answer in (("ride", nyc_ride), ("quote", nyc_quote)):
                    if answer.status_code in (200, 202):
                        nyc_served += 1
                    else:
                        nyc_failures.append(f"{what} {answer.status_code} {answer.text[:120]}")
            moved = await migration
            await publishing
            took_s = time.monotonic() - started
            assert moved >= FILLER_KEYS, f"only {moved} keys moved"
            for rider, ride_id in accepted:
                got = await ingest.http.get(
                    f"/v1/rides/{ride_id}", headers=ingest.auth("rider", rider)
                )
                assert got.status_code == 200, f"acknowledged ride {ride_id}: {got.status_code}"
        print(
            f"migration: {moved} keys in {took_s:.1f} s; sf answers {Counter(sf_codes)}; "
            f"nyc served {nyc_served}, failed {len(nyc_failures)}"
        )
        assert not consuming.done(), f"the consumer ended: {consuming}"
        sf_accepted = sum(rider.startswith("mig-sf-") for rider, _ in accepted)
        assert published > 0, "no event was published during the move"
        await wait_until(
            lambda: handled_count(redis, sf_accepted + published),
            timeout_s=30,
            what=f"the consumer to handle {sf_accepted} rides sf accepted and {published} events",
        )
        assert consumer.stats.dead_lettered == 0, f"events dead-lettered: {consumer.stats}"
        assert consumer.stats.failed == 0, f"deliveries charged to valid events: {consumer.stats}"
        assert consumer.stats.transient_errors > 0, "the move never troubled the consumer"
        assert nyc_failures == [], f"nyc failed while sf's slot moved: {nyc_failures}"
        assert 202 in sf_codes[-5:], f"sf takes rides again after the move: {sf_codes[-5:]}"
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await redis.aclose()
