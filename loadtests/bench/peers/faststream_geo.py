"""The consumer peer: a FastStream Redis-stream subscriber doing matching's geo-index update per
message, as a competent user writes it: one message per ping, a typed pydantic handler, the
consumer group and acks left to the library, HSET/GEOADD/ZADD in one pipeline per message.
(Generous to the peer: per-message logging is off, and it skips the stale-ping check.)

`python -m loadtests.bench.peers.faststream_geo --url U --prefix P --pings N` publishes N pings
through FastStream, then times the subscriber until it has handled them all; prints one JSON
line."""

from __future__ import annotations

import asyncio
import time

from faststream.redis import RedisBroker, StreamSub
from pydantic import BaseModel, Field

from loadtests.bench import fleet
from loadtests.bench.servers import child_main
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.positions import pack_position

GROUP = "geo"
PUBLISH_PIPELINE = 1000
MAX_RECORDS = 100  # entries a read asks for


class Ping(BaseModel):
    driver_id: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    ts: int
    speed_mps: float | None = None
    heading: float | None = None


async def run(url: str, prefix: str, pings: int = 30_000) -> dict[str, float]:
    keys = MarketKeys("sf", prefix)
    stream = f"{prefix}:{{sf}}:fs-telemetry"
    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]  # None turns per-message logs off
    done = asyncio.Event()
    handled = 0

    @broker.subscriber(
        stream=StreamSub(stream, group=GROUP, consumer="geo-1", max_records=MAX_RECORDS)
    )
    async def on_ping(ping: Ping) -> None:
        nonlocal handled
        pipe = client.pipeline(transaction=False)
        pipe.hset(
            keys.positions, ping.driver_id, pack_position(ping.lat, ping.lon, ping.ts, ping.heading)
        )
        pipe.geoadd(keys.drivers_geo, [ping.lon, ping.lat, ping.driver_id])
        pipe.zadd(keys.drivers_seen, {ping.driver_id: ping.ts})
        await pipe.execute()
        handled += 1
        if handled >= pings:
            done.set()

    client = await broker.connect()
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)  # see what is already there
    batch = fleet.pings(0, pings, ts=now_ms())
    for start in range(0, pings, PUBLISH_PIPELINE):
        async with client.pipeline(transaction=False) as pipe:
            for ping in batch[start : start + PUBLISH_PIPELINE]:
                await broker.publish(ping, stream=stream, pipeline=pipe)
            await pipe.execute()
    started = time.perf_counter()
    await broker.start()
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - started
    indexed = await client.zcard(keys.drivers_geo)
    await broker.stop()
    return {"pings": float(pings), "seconds": elapsed, "indexed": float(indexed)}


if __name__ == "__main__":
    child_main(run)
