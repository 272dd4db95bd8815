"""eta's read model: learned speeds per H3 cell in a hash (keys.speeds), which matching and
ingest read through ridepulse.travel. Written whole every few seconds with one HSET, not per
ping; read back at start so a restart keeps what the fleet taught. Leased (ridepulse.leases),
only owned markets are written, through `fenced_hset`: a replica paused past its lease is
refused and drops the market."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from eta.deps import EtaDeps
from eta.model import SpeedModel
from ridepulse.bus.faults import Backoff
from ridepulse.leases import fenced_hset
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop

PERSIST_INTERVAL_S = 2.0  # readers refresh every 5 s (ridepulse.travel); twice as often suffices


async def restore_speeds(deps: EtaDeps) -> None:
    for market in deps.models:
        await restore_market_speeds(deps, market)


async def restore_market_speeds(deps: EtaDeps, market: str) -> None:
    raw: Any = await deps.redis.hgetall(deps.keys(market).speeds)
    deps.models[market].restore({key.decode(): float(value) for key, value in raw.items()})


async def persist_speeds(deps: EtaDeps) -> int:
    """Write each market's model if it learned anything since the last write; cells written."""
    written = 0
    for market in sorted(deps.learned):
        model: SpeedModel = deps.models[market]
        if not deps.owns(market):
            deps.learned.discard(market)  # another replica's now: what it learns stands
            continue
        snapshot = {cell: round(mps, 3) for cell, mps in model.snapshot().items()}
        if snapshot and not await _write(deps, market, snapshot):
            get_logger(component="speeds").info("eta.speeds_refused", market=market)
            deps.refused(market)
            continue
        deps.learned.discard(market)
        model.forget_idle()
        written += len(snapshot)
    return written


async def _write(deps: EtaDeps, market: str, snapshot: dict[str, float]) -> bool:
    """One HSET of the whole model; leased, fenced by this replica's lease (False: refused)."""
    key = deps.keys(market).speeds
    lease, fence = deps.fence(market)
    if lease is None:
        await deps.redis.hset(key, mapping=snapshot)  # type: ignore[arg-type]
        return True
    values = {cell: str(mps) for cell, mps in snapshot.items()}
    return await fenced_hset(deps.redis, lease, fence, key, values)


async def run_persister(deps: EtaDeps, stop: asyncio.Event) -> None:
    log = get_logger(component="speeds")
    backoff = Backoff()
    pause_s = PERSIST_INTERVAL_S
    while not stop.is_set():
        await sleep_or_stop(stop, pause_s)
        pause_s = PERSIST_INTERVAL_S
        try:
            await persist_speeds(deps)  # once more after stop: what was learned is kept
            backoff.reset()
        except (RedisError, OSError) as exc:
            pause_s = backoff.after_failure_s(PERSIST_INTERVAL_S)
            log.warning("eta.persist_failed", error=str(exc), retry_in_s=round(pause_s, 2))
