"""The one clock every timed rule uses: the Redis server's (TIME), the same the step scripts read.

Phones and service hosts disagree by seconds; a ride's offer expiry, deadline and a driver's
freshness are all stamped and judged on the server, so none of them can disagree."""

from __future__ import annotations

import redis.asyncio as aioredis

from ridepulse.replies import time_ms


async def server_time_ms(redis: aioredis.Redis) -> int:
    return time_ms(await redis.time())
