"""Whether Redis refuses ingest's writes (ridepulse/write_refusals.py), checked once a second
in the background, so /readyz answers without an INFO round trip per probe: a server at its
maxmemory, unable to persist or short of replicas refused every ride and ping while /readyz
said 200; one with its AOF off refused every durable ride request."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from ridepulse.errors import CannotStart
from ridepulse.logs import get_logger
from ridepulse.periodic import every
from ridepulse.redis_client import connect
from ridepulse.settings import Settings
from ridepulse.write_refusals import node_refusals

CHECK_EVERY_S = 1.0  # a verdict /readyz gives is at most this old
# Why a server's INFO is refused and what fixes it: after an upgrade a Valkey keeps the ACL file
# it started with, without the INFO grants of ingest's user, until restarted or ACL LOAD.
UNREADABLE_FIX = (
    "ingest's ACL user may not read INFO persistence/memory/replication (a Valkey still on the "
    "ACL file of an older version): restart Valkey or run ACL LOAD on every node; until then "
    "/readyz cannot tell whether Redis refuses writes"
)


class WriteRefusalWatch:
    """The last verdict: each refusing server's line (empty while every server takes writes),
    and whether they block every write (every primary refusing every write: /readyz's 503)."""

    def __init__(self, redis: aioredis.Redis, durable_writes: bool) -> None:
        self.redis = redis
        self.durable_writes = durable_writes
        self.problems: list[str] = []
        self.blocks = False
        self._warned_unreadable = False

    async def check(self) -> None:
        self.problems, self.blocks = [], False  # a failed pass keeps no stale verdict
        verdicts = await node_refusals(self.redis, self.durable_writes)
        self.problems = [problem for _, problem in verdicts.refusals]
        self.blocks = verdicts.every_primary_refuses
        if verdicts.unreadable and not self._warned_unreadable:
            self._warned_unreadable = True  # once: it lasts until the operator acts
            get_logger().warning(
                "ingest.refusal_check_unavailable", error=verdicts.unreadable, fix=UNREADABLE_FIX
            )

    async def run(self, stop: asyncio.Event) -> None:
        await every(
            stop, CHECK_EVERY_S, self.check, log=get_logger(), failed="ingest.refusal_check_failed"
        )


def refuse_start_without_aof(settings: Settings) -> None:
    """CannotStart (one line: the cause and both fixes) when durable writes are on and a server
    has its AOF off: every ride request would be a 503 while the platform looked up. A server
    whose INFO ingest may not read is unknown, not off: ingest starts (its watch warns)."""

    async def aof_off() -> list[str]:
        client = connect(settings, for_requests=True)
        try:
            verdicts = await node_refusals(client, settings.durable_writes)
        finally:
            await client.aclose()
        return [problem for cause, problem in verdicts.refusals if cause == "aof"]

    if settings.durable_writes and (problems := asyncio.run(aof_off())):
        raise CannotStart(f"ingest cannot start: {problems[0]}")
