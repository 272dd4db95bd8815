"""What a 202 on a ride request guarantees, and how: the ride script and WAITAOF on ONE connection.

WAITAOF waits for the AOF fsync of the writes *of the connection it is sent on*. So the ride
script runs on a connection checked out for the request (`pinned`), WAITAOF 1 0 follows on
it, and the 202 goes out only when the reply says the local AOF fsynced that write
(reply[0] >= 1). Otherwise (a timeout, or a server with appendonly off refusing WAITAOF) the
answer is 503 with Retry-After: the ride may exist in memory, and the rider's retry with the
same Idempotency-Key gets that ride (its replay step writes, so the new WAITAOF covers it).

A 202 then survives a Redis process crash and an OS crash of the Redis host. Replicas are not
awaited by default: asynchronous failover can still lose an acknowledged ride (DESIGN §11).
RIDEPULSE_RIDE_REPLICA_ACKS=1 sends `WAIT 1 timeout` on the same pinned connection after
WAITAOF (in a cluster: the connection to the market's primary), and answers 503 + Retry-After
when no replica acknowledged the write in time.
RIDEPULSE_DURABLE_WRITES=false skips WAITAOF, for a server run deliberately without AOF: a 202
then means "in Redis memory" only, and /readyz reports `durable_writes: false`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from ridepulse.errors import NotDurable, RidePulseError
from ridepulse.logs import get_logger
from ridepulse.write_refusals import REDIS_WRITES_REFUSED, refusal_reason

if TYPE_CHECKING:
    from ingest.deps import Deps

NOT_DURABLE_RETRY_AFTER_S = 1


class Pinned(Protocol):
    """One server connection, held for a request: its commands share WAITAOF's view."""

    async def execute(self, *args: Any) -> Any: ...


async def run_script(pin: Pinned, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
    """EVALSHA on the pinned connection; SCRIPT LOAD first when the server does not know the
    script yet (service users may not EVAL arbitrary source: docs/security.md)."""
    try:
        return await pin.execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await pin.execute("SCRIPT", "LOAD", script.script)
        return await pin.execute("EVALSHA", script.sha, len(keys), *keys, *args)


class _ClientPin:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def execute(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]


class _NodePin:
    """A raw connection of the cluster node that owns the key's slot (the cluster client has no
    single-connection mode); a MOVED during failover surfaces as an error → 503, retry."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def execute(self, *args: Any) -> Any:
        await self.connection.send_command(*args)
        return await self.connection.read_response()


@asynccontextmanager
async def pinned(redis: aioredis.Redis, key: str) -> AsyncIterator[Pinned]:
    """A connection checked out for the block: to the server, or to the primary of `key`."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # a no-op once the slots are known; needed before the first call
        node: ClusterNode = redis.get_node_from_key(key)
        connection = node.acquire_connection()
        try:
            yield _NodePin(connection)
        except (RidePulseError, ResponseError):
            raise  # a refusal or an error reply: the reply was read in full, keep the connection
        except BaseException:
            await connection.disconnect()  # a reply may be left unread: never reuse it
            raise
        finally:
            node.release(connection)
        return
    async with redis.client() as client:
        yield _ClientPin(client)


async def make_durable(deps: Deps, pin: Pinned) -> None:
    """Wait for the local AOF fsync of the writes made on `pin`; NotDurable (503) otherwise."""
    if not deps.settings.durable_writes:
        return
    timeout_ms = deps.settings.durable_timeout_ms
    try:
        reply = await pin.execute("WAITAOF", 1, 0, timeout_ms)
    except ResponseError as exc:
        get_logger().error("ingest.waitaof_refused", error=str(exc))
        REDIS_WRITES_REFUSED.labels(refusal_reason(exc) or "aof").inc()
        raise NotDurable(
            "the ride is not on disk: the server refused WAITAOF (is appendonly on?); retry "
            "with the same Idempotency-Key",
            retry_after_s=NOT_DURABLE_RETRY_AFTER_S,
        ) from None
    if not reply or int(reply[0]) < 1:
        get_logger().warning("ingest.waitaof_timeout", reply=list(reply or []), ms=timeout_ms)
        raise NotDurable(
            f"the ride was not fsynced within {timeout_ms} ms; retry with the same Idempotency-Key",
            retry_after_s=NOT_DURABLE_RETRY_AFTER_S,
        )
    await wait_for_replicas(deps.settings.ride_replica_acks, timeout_ms, pin)


async def wait_for_replicas(acks: int, timeout_ms: int, pin: Pinned) -> None:
    """WAIT for `acks` replicas to have the writes made on `pin`; NotDurable (503) otherwise.

    WAIT, like WAITAOF, counts the replication offset of this connection's last write, so it
    must run on the pinned connection. acks=0 skips it (one server, or async replication)."""
    if acks <= 0:
        return
    acked = int(await pin.execute("WAIT", acks, timeout_ms))
    if acked < acks:
        get_logger().warning("ingest.wait_replicas_timeout", acked=acked, wanted=acks)
        raise NotDurable(
            f"the ride reached {acked} of {acks} replicas within {timeout_ms} ms; retry with the "
            "same Idempotency-Key",
            retry_after_s=NOT_DURABLE_RETRY_AFTER_S,
        )
