"""What the end-to-end figure watches while it runs: consumer lag per group (entries and age of
the oldest undelivered entry), RSS per service process, and the telemetry stream's memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ridepulse.pause import sleep_or_stop


def id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


@dataclass
class GroupLag:
    max_entries: int = 0
    max_seconds: float = 0.0
    max_pending: int = 0
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, entries, seconds)


async def group_lags(redis: aioredis.Redis, stream: str) -> dict[str, tuple[int, float, int]]:
    """group → (undelivered entries, age in s of the oldest undelivered entry, pending)."""
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError:
        return {}
    now_ms = time.time() * 1000
    out: dict[str, tuple[int, float, int]] = {}
    for group in groups:
        lag = int(group.get("lag") or 0)
        age_s = 0.0
        if lag:
            last = group["last-delivered-id"]
            nxt: Any = await redis.xrange(stream, min=b"(" + last, max="+", count=1)
            if nxt:
                age_s = max(0.0, (now_ms - id_ms(nxt[0][0])) / 1000)
        out[group["name"].decode()] = (lag, age_s, int(group["pending"]))
    return out


async def sample_lag(
    redis: aioredis.Redis,
    streams: dict[str, str],
    stop: asyncio.Event,
    lags: dict[str, GroupLag],
    interval_s: float = 0.5,
) -> None:
    """Record the lag of every group of every stream until `stop` (keys: 'stream/group')."""
    started = time.monotonic()
    while not stop.is_set():
        for label, stream in streams.items():
            for group, (entries, seconds, pending) in (await group_lags(redis, stream)).items():
                lag = lags.setdefault(f"{label}/{group}", GroupLag())
                lag.max_entries = max(lag.max_entries, entries)
                lag.max_seconds = max(lag.max_seconds, seconds)
                lag.max_pending = max(lag.max_pending, pending)
                lag.samples.append(
                    (round(time.monotonic() - started, 2), entries, round(seconds, 3))
                )
        await sleep_or_stop(stop, interval_s)


async def sample_rss(
    processes: Callable[[], dict[str, psutil.Process]],
    stop: asyncio.Event,
    peaks: dict[str, int],
    interval_s: float = 0.5,
) -> None:
    """Peak resident set size (bytes) per service until `stop`."""
    while not stop.is_set():
        for name, proc in processes().items():
            with contextlib.suppress(psutil.Error):
                peaks[name] = max(peaks.get(name, 0), proc.memory_info().rss)
        await sleep_or_stop(stop, interval_s)


async def sample_stream_memory(
    redis: aioredis.Redis,
    stream: str,
    stop: asyncio.Event,
    series: list[tuple[float, int, int]],
    interval_s: float = 5.0,
) -> None:
    """(t, bytes, entries) of `stream` every `interval_s` until `stop`."""
    started = time.monotonic()
    while not stop.is_set():
        used: Any = await redis.memory_usage(stream)
        length: Any = await redis.xlen(stream)
        series.append((round(time.monotonic() - started, 1), int(used or 0), int(length)))
        await sleep_or_stop(stop, interval_s)


def cpu_seconds(services: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU time (user + system) used so far by each service, its replicas together."""
    out: dict[str, float] = {}
    for name, procs in services.items():
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[name] = out.get(name, 0.0) + t.user + t.system
    return out


async def command_stats(redis: aioredis.Redis, top: int = 10) -> list[dict[str, Any]]:
    """The server's busiest commands since the last CONFIG RESETSTAT: calls and seconds."""
    stats: Any = await redis.info("commandstats")
    rows = [
        {
            "command": k.removeprefix("cmdstat_"),
            "calls": int(v["calls"]),
            "seconds": round(v["usec"] / 1e6, 3),
            "usec_per_call": round(float(v["usec_per_call"]), 1),
        }
        for k, v in stats.items()
    ]
    return sorted(rows, key=lambda r: -float(r["seconds"]))[:top]
