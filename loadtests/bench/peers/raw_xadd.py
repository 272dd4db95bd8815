"""The Redis floor of batch telemetry: pipelined XADD of batched-ping entries from a Python client.

Same entry shape as ingest writes (eight envelope fields, 1000 pings per entry, approximate
MAXLEN); several connections, each with a pipeline of entries in flight. No HTTP, no
validation: what is left is serialising the pings and Redis appending them.
`python -m loadtests.bench.peers.raw_xadd --url U --stream S --seconds 5` prints one JSON line."""

from __future__ import annotations

import asyncio
import itertools
import time

import redis.asyncio as aioredis

from loadtests.bench.fleet import entry_fields, pings
from loadtests.bench.servers import child_main
from ridepulse.contracts.envelope import now_ms

CONNECTIONS = 4
PIPELINE_ENTRIES = 4  # entries in flight on each connection


async def run(
    url: str, stream: str, seconds: float = 5.0, entry_pings: int = 1000
) -> dict[str, float]:
    ts = now_ms()
    batches = [pings(i * entry_pings, entry_pings, ts=ts) for i in range(16)]
    redis = aioredis.from_url(url, max_connections=CONNECTIONS)

    async def writer() -> int:
        """One connection's pipelines of PIPELINE_ENTRIES entries, until the deadline."""
        sent = 0
        entries = itertools.cycle(batches)
        while time.perf_counter() < deadline:
            pipe = redis.pipeline(transaction=False)
            for batch in itertools.islice(entries, PIPELINE_ENTRIES):
                pipe.xadd(stream, entry_fields(batch), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
                sent += len(batch)
            await pipe.execute()
        return sent

    try:
        await redis.ping()
        started = time.perf_counter()
        deadline = started + seconds
        sent = await asyncio.gather(*(writer() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    finally:
        await redis.aclose()
    return {"pings": float(sum(sent)), "seconds": elapsed}


if __name__ == "__main__":
    child_main(run)
