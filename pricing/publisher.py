"""Every `surge_interval_s`: window counts → multipliers → the cells that changed go to the
surge read model (HASH keys.surge, cell → multiplier, absent = 1.0) and out as one
surge.updated event per market.

The hash is written before the event, and if either write fails the published state is put
back, so the next tick writes both again: the read model converges and no change goes
unannounced (a retried event may repeat one; its cells carry absolute values, so it is harmless)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from pricing.deps import PricingDeps
from pricing.supply import sample_supply
from pricing.surge import compute_surge
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import SurgeCell, SurgeUpdatedV1
from ridepulse.contracts.registry import make
from ridepulse.logs import get_logger


async def restore_published(deps: PricingDeps) -> None:
    """Start from what the read model shows, so a cell surging before a restart is cleared
    (HDEL + event) when its demand is gone, instead of staying stuck in the hash."""
    for market, surge in deps.markets.items():
        raw: Any = await deps.redis.hgetall(deps.keys(market).surge)
        surge.state.published = {k.decode(): float(v) for k, v in raw.items() if float(v) > 1.0}


async def _write(deps: PricingDeps, market: str, changed: dict[str, float]) -> None:
    keys = deps.keys(market)
    raised = {cell: m for cell, m in changed.items() if m > 1.0}
    cleared = [cell for cell, m in changed.items() if m <= 1.0]
    pipe = deps.redis.pipeline(transaction=False)
    if raised:
        pipe.hset(keys.surge, mapping=raised)  # type: ignore[arg-type]
    if cleared:
        pipe.hdel(keys.surge, *cleared)
    await pipe.execute()
    cells = [SurgeCell(cell=cell, multiplier=m) for cell, m in sorted(changed.items())]
    data = SurgeUpdatedV1(market=market, cells=cells)
    await deps.producer.publish(
        keys.surge_events, make("surge.updated", f"market/{market}", data, deps.source)
    )


async def publish_surge(deps: PricingDeps, market: str, at_ms: int) -> dict[str, float]:
    """One tick for one market at `at_ms`: supply read now, demand over the window; returns
    the cells whose multiplier changed."""
    surge = deps.markets[market]
    await sample_supply(deps, market, at_ms)
    demand, supply = surge.window.counts(at_ms)
    computed = compute_surge(demand, supply, cap=deps.settings.surge_cap)
    before = dict(surge.state.published)
    changed = surge.state.update(computed)
    if not changed:
        return {}
    try:
        await _write(deps, market, changed)
    except BaseException:
        surge.state.published = before
        raise
    return changed


async def run_publisher(deps: PricingDeps, stop: asyncio.Event) -> None:
    log = get_logger(component="surge")
    while not stop.is_set():
        for market in deps.markets:
            try:
                changed = await publish_surge(deps, market, now_ms())
                if changed:
                    log.info(
                        "surge.updated",
                        market=market,
                        cells=len(changed),
                        top=max(changed.values()),
                    )
            except (RedisError, OSError) as exc:
                log.warning("surge.publish_failed", market=market, error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), deps.settings.surge_interval_s)
