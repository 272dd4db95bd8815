"""A server of a test's own that refuses every write, the way a production one does.

NOREPLICAS: min-replicas-to-write 1 with no replica. MISCONF: a failed RDB snapshot with save
points set (the server's default stop-writes-on-bgsave-error) — `dump.rdb` made a directory, so
the snapshot's final rename fails, as a full disk would make it fail; no DEBUG command needed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.support.waiting import wait_until

REFUSALS = ("NOREPLICAS", "MISCONF")


@contextlib.asynccontextmanager
async def refusing_writes(redis: aioredis.Redis, code: str) -> AsyncIterator[None]:
    """Every write answered with `code` inside the block; writes accepted again after it."""
    if code == "NOREPLICAS":
        await redis.config_set("min-replicas-to-write", 1)
        try:
            yield
        finally:
            await redis.config_set("min-replicas-to-write", 0)
        return
    assert code == "MISCONF", code
    data_dir: Any = await redis.config_get("dir")
    blocker = Path(data_dir["dir"]) / "dump.rdb"
    blocker.mkdir()
    try:
        await redis.config_set("save", "3600 1")
        await redis.bgsave()
        await wait_until(lambda: _snapshot_failed(redis), timeout_s=30, what="a failed snapshot")
        yield
    finally:
        await redis.config_set("save", "")  # no save points: a failed snapshot stops nothing
        blocker.rmdir()


async def _snapshot_failed(redis: aioredis.Redis) -> bool:
    persistence: Any = await redis.info("persistence")
    return not persistence["rdb_bgsave_in_progress"] and (
        persistence["rdb_last_bgsave_status"] == "err"
    )
