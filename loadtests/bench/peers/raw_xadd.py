"""The Redis floor of batch telemetry: pipelined XADD of batched-ping entries from a Python client.

Same entry shape as ingest writes (eight envelope fields, 1000 pings per entry, approximate
MAXLEN); several connections, each with a pipeline of entries in flight. No HTTP, no
validation: what is left is serialising the pings and Redis appending them.
`python -m loadtests.bench.peers.raw_xadd --url U --stream S --seconds 5` prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import redis.asyncio as aioredis
import uvloop

from loadtests.bench.fleet import entry_fields, pings
from ridepulse.contracts.envelope import now_ms


async def _writer(
    redis: aioredis.Redis,
    stream: str,
    batches: list[list[dict[str, object]]],
    deadline: float,
    pipeline_entries: int,
) -> int:
    sent = 0
    turn = 0
    while time.perf_counter() < deadline:
        pipe = redis.pipeline(transaction=False)
        for _ in range(pipeline_entries):
            batch = batches[turn % len(batches)]
            turn += 1
            pipe.xadd(stream, entry_fields(batch), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
            sent += len(batch)
        await pipe.execute()
    return sent


async def run(
    url: str,
    stream: str,
    *,
    seconds: float,
    entry_pings: int,
    pipeline_entries: int,
    connections: int,
) -> dict[str, float]:
    ts = now_ms()
    batches = [pings(i * entry_pings, entry_pings, ts=ts) for i in range(16)]
    redis = aioredis.from_url(url, max_connections=connections)
    try:
        await redis.ping()
        started = time.perf_counter()
        deadline = started + seconds
        sent = await asyncio.gather(
            *(
                _writer(redis, stream, batches, deadline, pipeline_entries)
                for _ in range(connections)
            )
        )
        elapsed = time.perf_counter() - started
    finally:
        await redis.aclose()
    return {"pings": float(sum(sent)), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--entry-pings", type=int, default=1000)
    parser.add_argument("--pipeline-entries", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    result = uvloop.run(
        run(
            args.url,
            args.stream,
            seconds=args.seconds,
            entry_pings=args.entry_pings,
            pipeline_entries=args.pipeline_entries,
            connections=args.connections,
        )
    )
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
