"""eta's read model: learned speeds per H3 cell in a hash (keys.speeds), which matching and
ingest read through ridepulse.travel. Written whole every few seconds with one HSET, not per
ping; read back at start so a restart keeps what the fleet taught."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from eta.deps import EtaDeps
from eta.model import SpeedModel
from ridepulse.logs import get_logger

PERSIST_INTERVAL_S = 2.0  # readers refresh every 5 s (ridepulse.travel); twice as often suffices


async def restore_speeds(deps: EtaDeps) -> None:
    for market, model in deps.models.items():
        raw: Any = await deps.redis.hgetall(deps.keys(market).speeds)
        model.restore({key.decode(): float(value) for key, value in raw.items()})


async def persist_speeds(deps: EtaDeps) -> int:
    """Write each market's model if it learned anything since the last write; cells written."""
    written = 0
    for market in sorted(deps.learned):
        model: SpeedModel = deps.models[market]
        snapshot = {cell: round(mps, 3) for cell, mps in model.snapshot().items()}
        if snapshot:
            await deps.redis.hset(deps.keys(market).speeds, mapping=snapshot)  # type: ignore[arg-type]
        deps.learned.discard(market)
        model.forget_idle()
        written += len(snapshot)
    return written


async def run_persister(deps: EtaDeps, stop: asyncio.Event) -> None:
    log = get_logger(component="speeds")
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PERSIST_INTERVAL_S)
        try:
            await persist_speeds(deps)  # once more after stop: what was learned is kept
        except (RedisError, OSError) as exc:
            log.warning("eta.persist_failed", error=str(exc))
