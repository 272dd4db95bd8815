"""Telemetry trimmed before a group read it, counted as lost by the janitor.

A telemetry group lagging past the retention (or the append cap) loses its oldest pings by
design. The consumers cannot count that themselves: a stopped one sees nothing, and the read
that jumps the gap says nothing of it. The janitor, which trims, looks at each group's backlog
around every trim (ridepulse/bus/backlog.py: entries after the group's position that are no
longer in the stream), counts what is new in `rp_entries_lost_total{service="janitor"}` and
logs `janitor.trimmed_before_read` once per gap (a gap is known by the group's last-delivered
id: it ends when the group reads past it). Each janitor replica counts what it sees."""

from __future__ import annotations

import redis.asyncio as aioredis

from ridepulse.bus.backlog import groups_backlog
from ridepulse.bus.metrics import ENTRIES_LOST
from ridepulse.logs import get_logger


class TrimmedReads:
    """The gaps being counted: (stream, group) → (last-delivered id, entries counted)."""

    def __init__(self) -> None:
        self.gaps: dict[tuple[str, str], tuple[str, int]] = {}
        self.log = get_logger(component="telemetry_loss")

    async def observe(self, redis: aioredis.Redis, stream: str) -> int:
        """Count what was trimmed unread from `stream` since the last look; returns that."""
        backlogs = await groups_backlog(redis, stream, 0)
        for key in [k for k in self.gaps if k[0] == stream and k[1] not in backlogs]:
            del self.gaps[key]  # the group is gone
        counted_now = 0
        for group, backlog in backlogs.items():
            key = (stream, group)
            if not backlog.trimmed:
                self.gaps.pop(key, None)
                continue
            last, counted = self.gaps.get(key, (backlog.last_delivered, 0))
            if last != backlog.last_delivered:
                counted = 0  # the group read past the last gap: this one is new
            new = backlog.trimmed - counted
            if new <= 0:
                continue
            if counted == 0:
                self.log.error(
                    "janitor.trimmed_before_read",
                    stream=stream,
                    group=group,
                    entries=backlog.trimmed,
                    after=backlog.last_delivered,
                )
            ENTRIES_LOST.labels("janitor", group, stream).inc(new)
            self.gaps[key] = (backlog.last_delivered, backlog.trimmed)
            counted_now += new
        return counted_now
