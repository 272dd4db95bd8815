"""Redis connections with the options every process must share."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ridepulse.settings import Settings

RESP_PROTOCOL = 2  # pinned: reply shapes of stream commands differ between RESP2 and RESP3


def socket_timeout_s(settings: Settings) -> float:
    """Kept above XREADGROUP BLOCK, or blocked reads raise timeouts (DESIGN §11)."""
    return settings.block_ms / 1000 + 10.0


def connect(settings: Settings, url: str | None = None) -> aioredis.Redis:
    """An asyncio client (bytes replies, hiredis parser) for `url` or settings.redis_url.

    A `redis+cluster://` URL gives a cluster client; keys carry the market hash tag, so the
    same scripts run unchanged."""
    target = url or settings.redis_url
    if not target:
        raise ValueError("no Redis URL: start the embedded server or set RIDEPULSE_REDIS_URL")
    options: dict[str, Any] = {
        "protocol": RESP_PROTOCOL,
        "socket_timeout": socket_timeout_s(settings),
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "decode_responses": False,
    }
    if target.startswith("redis+cluster://"):
        cluster = RedisCluster.from_url(target.replace("redis+cluster://", "redis://"), **options)
        return cluster  # type: ignore[return-value]
    # A blocking pool queues callers when all connections are busy (backpressure) instead of
    # failing them with "Too many connections" under bursts.
    pool = aioredis.BlockingConnectionPool.from_url(
        target, max_connections=settings.redis_max_connections, timeout=10, **options
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
