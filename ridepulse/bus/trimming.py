"""Trimming that cannot lose work.

MAXLEN/MINID (even approximate) delete pending and never-delivered entries (DESIGN §11). For
streams whose events must not be lost we trim only below every group's oldest pending id and
last-delivered id. Telemetry is trimmed by approximate MAXLEN on append instead: there a
lagging consumer loses old pings by design, and the janitor counts the gap
(ridepulse/telemetry_loss.py)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(parsed: tuple[int, int]) -> str:
    return f"{parsed[0]}-{parsed[1]}"


async def safe_trim_floor(redis: aioredis.Redis, stream: str) -> str | None:
    """The lowest id any group still needs, or None when nothing may be trimmed."""
    groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    if not groups:
        return None  # no reader has declared itself: we cannot know what is still needed
    floor: tuple[int, int] | None = None
    for group in groups:
        candidates = [parse_id(group["last-delivered-id"])]
        if group["pending"]:
            summary = await redis.xpending(stream, group["name"])
            if summary["min"] is not None:  # acked between the two reads: nothing pending now
                candidates.append(parse_id(summary["min"]))
        low = min(candidates)
        floor = low if floor is None else min(floor, low)
    return format_id(floor) if floor is not None else None


async def trim_acknowledged(
    redis: aioredis.Redis, stream: str, *, keep_after_ms: int | None = None
) -> int:
    """Trim entries every group has acknowledged, keeping those newer than `keep_after_ms`
    (history for readers without a group: the dashboard, replays); returns how many went."""
    floor = await safe_trim_floor(redis, stream)
    if floor is None or floor == "0-0":
        return 0
    if keep_after_ms is not None and parse_id(floor) > (keep_after_ms, 0):
        floor = format_id((keep_after_ms, 0))
    removed: int = await redis.xtrim(stream, minid=floor, approximate=True)
    return removed
