"""What a 202 on a ride request guarantees.

After the ride script ran, WAITAOF 1 0 waits until the local AOF has fsynced the write: a
202 then survives a Redis process crash *and* an OS crash of the Redis host. Without AOF
(a user-supplied server with appendonly off) WAITAOF is refused; we then only promise what
the server promises and say so once in the log. Replicas are not awaited (numreplicas 0):
asynchronous failover can still lose an acknowledged write (DESIGN §11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

from ridepulse.logs import get_logger

if TYPE_CHECKING:
    from ingest.deps import Deps

WAITAOF_TIMEOUT_MS = 2000


async def make_durable(deps: Deps) -> None:
    if not deps.durable_writes:
        return
    try:
        await deps.redis.execute_command("WAITAOF", 1, 0, WAITAOF_TIMEOUT_MS)  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        deps.durable_writes = False
        get_logger().warning(
            "ingest.waitaof_unavailable", error=str(exc), guarantee="in memory only"
        )
