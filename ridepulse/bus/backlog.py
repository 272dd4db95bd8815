"""How far a consumer group trails its stream, trimmed entries included.

XINFO GROUPS' `lag` counts every entry appended after the group's position (entries-added
minus entries-read), trimmed or not: Valkey keeps it valid across XTRIM. Trimming only ever
removes the head, so once the group's unread entries reach past the stream's length the
difference went before the group read it: `trimmed = lag - XLEN`. Age is what a stale
position costs, so the lag in seconds is that of the oldest entry the group was not delivered;
once that entry is gone, all that is known is that it came after the group's last-delivered id,
whose time is taken (the stream's first entry is younger: it read a stopped group as catching
up, then as caught up once the trim had emptied the stream)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ridepulse.bus.trimming import parse_id
from ridepulse.replies import text
from ridepulse.settings import Settings
from ridepulse.telemetry_groups import parse_shed_groups

NEVER_READ = (0, 0)  # a group created at 0 that has delivered nothing: no time to start from


@dataclass(frozen=True, slots=True)
class Backlog:
    unread: int  # entries appended after the group's position, still in the stream
    trimmed: int  # entries appended after it and trimmed before the group read them
    lag_s: float  # age of the oldest entry the group was not delivered (server clock)
    last_delivered: str


CAUGHT_UP = Backlog(0, 0, 0.0, "0-0")


def live_consumer_idle_ms(block_ms: int) -> int:
    """How long a live consumer goes without asking for entries at most: it asks once per
    blocking read (RIDEPULSE_BLOCK_MS, 1 s by default) and XINFO CONSUMERS' `idle` restarts at
    each ask; a few reads' worth of handling on top. Silent longer, it is stopped (SIGSTOP, a
    partition) or gone: 5 s by default."""
    return 3 * block_ms + 2_000


async def group_backlog(
    redis: aioredis.Redis,
    stream: str,
    group: dict[Any, Any],
    now_ms: int,
    live_idle_ms: int = live_consumer_idle_ms(1_000),
) -> Backlog:
    """The backlog of one group (a row of XINFO GROUPS) on `stream`, `now_ms` by the server's
    clock. One round trip (XLEN, XRANGE of one entry) when the group is behind, none otherwise:
    ingest measures this four times a second."""
    last = text(group.get("last-delivered-id") or "0-0")
    lag = group.get("lag")
    if lag is not None and int(lag) == 0:
        return Backlog(0, 0, 0.0, last)
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(stream)
    pipe.xrange(stream, min=f"({last}", max="+", count=1)
    length, following = await pipe.execute()
    if lag is None:  # XDEL tombstones past the group: the count is unknown, the age is not
        trimmed, unread = 0, (int(length) if following else 0)
    else:
        trimmed = max(0, int(lag) - int(length))
        unread = int(lag) - trimmed
    if trimmed and not unread and await _a_consumer_reads(redis, stream, group, live_idle_ms):
        # The gap is lost (the janitor counts it) and a live group has read all that is left:
        # it is caught up. Measured from its position regardless, a group whose backlog was
        # trimmed while ingest shed every ping stayed behind for ever once resumed: shedding
        # waited for the group, and the group for the pings shedding refused.
        return Backlog(0, trimmed, 0.0, last)
    if trimmed and parse_id(last) != NEVER_READ:
        oldest_ms = parse_id(last)[0]
    elif following:
        oldest_ms = parse_id(following[0][0])[0]
    else:
        return Backlog(unread, trimmed, 0.0, last)
    return Backlog(unread, trimmed, max(0.0, (now_ms - oldest_ms) / 1000), last)


async def _a_consumer_reads(
    redis: aioredis.Redis, stream: str, group: dict[Any, Any], live_idle_ms: int
) -> bool:
    """Whether some consumer of the group has asked for entries within `live_idle_ms`."""
    consumers: Any = await redis.xinfo_consumers(stream, text(group["name"]))
    return any(int(c["idle"]) <= live_idle_ms for c in consumers)


async def groups_backlog(
    redis: aioredis.Redis,
    stream: str,
    now_ms: int,
    names: set[str] | None = None,
    live_idle_ms: int = live_consumer_idle_ms(1_000),
) -> dict[str, Backlog]:
    """Every group's backlog on `stream` (those in `names` only, when given); {} when the
    stream does not exist yet."""
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:
        return {}
    found: dict[str, Backlog] = {}
    for group in groups:
        name = text(group["name"])
        if names is None or name in names:
            found[name] = await group_backlog(redis, stream, group, now_ms, live_idle_ms)
    return found


async def shedding_groups_backlog(
    redis: aioredis.Redis, settings: Settings, stream: str, now_ms: int
) -> dict[str, Backlog]:
    """The backlog of the groups whose lag sheds telemetry (RIDEPULSE_TELEMETRY_SHED_GROUPS),
    a consumer counted live as `live_consumer_idle_ms` of the settings' block says: what
    ingest sheds on and the janitor holds its driver sweeps back on, measured the same way."""
    wanted = parse_shed_groups(settings.telemetry_shed_groups)
    live_idle_ms = live_consumer_idle_ms(settings.block_ms)
    return await groups_backlog(redis, stream, now_ms, wanted, live_idle_ms)
