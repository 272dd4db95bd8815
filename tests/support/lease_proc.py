"""A real lease-holding replica for the lease tests: it keeps leases on the given markets and,
every 50 ms, writes ``owner`` into each held market's scratch hash through the fence; a write
the fence refuses is counted in ``{prefix}:lease-test:refused:<owner>``."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time

from ridepulse.leases import LeaseKeeper, fenced_hset, lease_key
from ridepulse.redis_client import connect
from ridepulse.settings import Settings


def scratch_hash(prefix: str, market: str) -> str:
    return f"{prefix}:{{{market}}}:lease-test:state"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--markets", required=True)
    parser.add_argument("--ttl-ms", type=int, default=1500)
    args = parser.parse_args()
    redis = connect(Settings(redis_url=args.redis_url, key_prefix=args.prefix))
    owner = f"lease-test@{socket.gethostname()}-{os.getpid()}"
    keeper = LeaseKeeper(redis, args.prefix, "lease-test", owner, args.markets.split(","))
    keeper.ttl_ms = args.ttl_ms
    next_tick = 0.0
    while True:
        # The write comes before the renewal: a replica resumed after a pause writes with what
        # it believed it held, which is exactly what the fence must refuse.
        for market in list(keeper.held):
            lease = lease_key(args.prefix, "lease-test", market)
            state = scratch_hash(args.prefix, market)
            if not await fenced_hset(redis, lease, keeper.fence(market), state, {"owner": owner}):
                await redis.incr(f"{args.prefix}:lease-test:refused:{owner}")
        if time.monotonic() >= next_tick:
            await keeper.tick(int(time.time() * 1000))
            next_tick = time.monotonic() + args.ttl_ms / 3000
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
