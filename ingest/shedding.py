"""Load shedding: when the telemetry consumers fall behind, pings get 429 (never rides)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ridepulse.logs import get_logger

if TYPE_CHECKING:
    from ingest.deps import Deps

CHECK_INTERVAL_S = 1.0


async def max_telemetry_lag(deps: Deps) -> int:
    worst = 0
    for market in deps.markets.markets:
        try:
            groups: Any = await deps.redis.xinfo_groups(deps.keys(market.id).telemetry)
        except Exception:
            continue
        worst = max([worst, *[int(g.get("lag") or 0) for g in groups]])
    return worst


async def watch_telemetry_lag(deps: Deps, stop: asyncio.Event) -> None:
    log = get_logger(component="shedding")
    while not stop.is_set():
        lag = await max_telemetry_lag(deps)
        shedding = lag > deps.settings.telemetry_shed_lag
        if shedding != deps.shedding:
            log.warning("ingest.shedding" if shedding else "ingest.shedding_stopped", lag=lag)
        deps.shedding = shedding
        try:
            await asyncio.wait_for(stop.wait(), CHECK_INTERVAL_S)
        except TimeoutError:
            pass
