"""Redis connections with the options every process must share."""

from __future__ import annotations

from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import DataError

from ridepulse.cluster_client import (
    REQUEST_REDIRECT_BUDGET_S,
    ClusterClient,
    request_cluster_retry,
)
from ridepulse.redis_url import cluster_seeds
from ridepulse.settings import Settings

CLUSTER_MAX_CONNECTIONS_PER_NODE = 1024
RESP_PROTOCOL = 2  # pinned: reply shapes of stream commands differ between RESP2 and RESP3


def socket_timeout_s(settings: Settings) -> float:
    """Kept above XREADGROUP BLOCK, or blocked reads raise timeouts (DESIGN §11)."""
    return settings.block_ms / 1000 + 10.0


# What a healthy server may need past the longest wait a request asks of it: the reply's trip
# and an event loop busy with other requests getting to it.
REQUEST_REPLY_MARGIN_S = 1.0


def request_socket_timeout_s(settings: Settings) -> float:
    """For clients that serve HTTP requests and never block on a read: the longest a request's
    command may take is WAITAOF (then WAIT) with RIDEPULSE_DURABLE_TIMEOUT_MS, each answered by
    the server when that time is up, so a reply later than that plus a margin means the server is
    frozen or cut off: the request gets its 503 then (3 s by default), not after the 11 s meant
    for blocked stream reads. Derived, not a setting of its own: raising the durable timeout
    raises it."""
    return settings.durable_timeout_ms / 1000 + REQUEST_REPLY_MARGIN_S


class HiredisPackingConnection(aioredis.Connection):
    """redis-py's asyncio connection packs commands in pure Python (its sync client already
    uses hiredis): for a pipeline of GEOADD/HSET/ZADD over thousands of drivers that packing
    was a third of the geo consumer's CPU. hiredis packs the same bytes in C."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])  # "CONFIG GET" → two words
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            pass  # buffers hiredis does not take, or a value redis-py would refuse too
        try:
            converted = tuple(
                bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args
            )
            return [hiredis.pack_command(converted)]  # type: ignore[arg-type]
        except TypeError as exc:  # the error type redis-py's own packer raises
            raise DataError(f"invalid command argument: {exc}") from None

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join(self.pack_command(*command)[0] for command in commands)]


def connect(
    settings: Settings, url: str | None = None, *, for_requests: bool = False
) -> aioredis.Redis:
    """An asyncio client (bytes replies, hiredis parser) for `url` or settings.redis_url.

    `for_requests`: a client of HTTP request handlers, which must never block on a read
    (request_socket_timeout_s) and, on a cluster, tries each command once (request_cluster_retry)
    but for a slot being migrated (REQUEST_REDIRECT_BUDGET_S);
    otherwise its socket timeout is above the blocking reads'.
    A `redis+cluster://` URL gives a cluster client; keys carry the market hash tag, so the
    same scripts run unchanged."""
    target = url or settings.redis_url
    if not target:
        raise ValueError("no Redis URL: start the embedded server or set RIDEPULSE_REDIS_URL")
    options: dict[str, Any] = {
        "protocol": RESP_PROTOCOL,
        "socket_timeout": (
            request_socket_timeout_s(settings) if for_requests else socket_timeout_s(settings)
        ),
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "decode_responses": False,
    }
    if target.startswith("redis+cluster://"):
        # redis-py's asyncio cluster client has no blocking pool: past `max_connections` per node
        # it raises instead of queuing. A burst of ride requests (300 at once in the e2e suite)
        # must queue in the event loop, not fail, so the cap is wide.
        first, seeds = cluster_seeds(target)
        cluster = ClusterClient.from_url(
            first,
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            max_connections=max(settings.redis_max_connections, CLUSTER_MAX_CONNECTIONS_PER_NODE),
            **(
                {"retry": request_cluster_retry(), "redirect_budget_s": REQUEST_REDIRECT_BUDGET_S}
                if for_requests
                else {}
            ),
            **options,
        )
        return cluster  # type: ignore[return-value]
    # A blocking pool queues callers when all connections are busy (backpressure) instead of
    # failing them with "Too many connections" under bursts.
    if target.startswith("redis://"):
        options["connection_class"] = HiredisPackingConnection  # TLS and unix sockets keep theirs
    pool = aioredis.BlockingConnectionPool.from_url(
        target, max_connections=settings.redis_max_connections, timeout=10, **options
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A blocking client for the CLI and the launcher: a cluster client for `redis+cluster://`."""
    if url.startswith("redis+cluster://"):
        first, seeds = cluster_seeds(url)
        others = [redis.cluster.ClusterNode(h, p) for h, p in seeds]  # type: ignore[no-untyped-call]
        cluster = redis.RedisCluster.from_url(first, startup_nodes=others, **options)
        return cluster  # type: ignore[return-value]
    return redis.Redis.from_url(url, **options)


def pipelines_take_scripts(client: aioredis.Redis) -> bool:
    """redis-py's cluster pipeline refuses EVALSHA: on a cluster a batch of script calls runs
    concurrently instead (still one slot per call, the market's)."""
    return not isinstance(client, RedisCluster)
