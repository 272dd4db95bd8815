"""A real consumer process for crash and shutdown tests.

Each event's effect (HINCRBY effects <event id> 1, INCR progress) runs through apply_once, so
the test can count that every effect happened exactly once across kills and claims."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.worker import consumer_name, run_service
from ridepulse.contracts.registry import Event
from ridepulse.keys import MarketKeys
from ridepulse.logs import configure_logging
from ridepulse.redis_client import connect
from ridepulse.settings import Settings
from tests.support.idempotency import apply_once, guard_key, scratch_key


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", default="counter")
    parser.add_argument("--consumer", default=None, help="unset: the default per-process name")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--read-count", type=int, default=200)
    parser.add_argument(
        "--stall-after",
        type=int,
        default=0,
        help="hang inside the handler after this many effects, so a kill lands mid-batch",
    )
    return parser.parse_args()


async def main() -> None:
    args = parse()
    settings = Settings(
        redis_url=args.redis_url,
        key_prefix=args.prefix,
        block_ms=200,
        read_count=args.read_count,
        claim_idle_ms=60_000,
        heartbeat_interval_s=0.5,
    )
    redis = connect(settings)
    consumer = args.consumer or consumer_name(settings, "counter")
    keys = MarketKeys("sf", args.prefix)
    effects, progress = scratch_key(keys, "effects"), scratch_key(keys, "progress")
    handled = 0

    async def count(event: Event, deps: Any) -> None:
        def effect(pipe: Any) -> None:
            pipe.hincrby(effects, event.id, 1)
            pipe.incr(progress)

        await apply_once(redis, guard_key(keys, args.group, event.id), effect)
        nonlocal handled
        handled += 1
        if handled == args.stall_after:
            await asyncio.Event().wait()
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)

    runtime = ConsumerRuntime(
        redis,
        settings=settings,
        service="counter",
        group=args.group,
        consumer=consumer,
        sources=[StreamSource(keys.rides, "sf")],
        handlers=HandlerTable(per_event={"ride.expired": count}),
        deps=None,
    )
    await run_service(redis, settings, service="counter", consumer=consumer, runtimes=[runtime])
    await redis.aclose()


if __name__ == "__main__":
    configure_logging("counter", "warning")
    asyncio.run(main())
