"""Every `surge_interval_s`: window counts → multipliers → the cells that changed go to the
surge read model (HASH keys.surge, cell → multiplier, absent = 1.0) and out as one
surge.updated event per market.

The hash is written before the event, and if either write fails the published state is put
back, so the next tick writes both again: the read model converges and no change goes
unannounced (a retried event may repeat one; its cells carry absolute values, so it is harmless).

Leased mode (``settings.leases``, docs/scaling.md): `run_leases` keeps this replica's market
leases; only owned markets are published, the hash write goes through `fenced_hset` (a replica
paused past its lease is refused and announces nothing), and a market just taken over is rebuilt
as at start — published state from the hash, demand of the last window from the ride stream.
Each tick the owner also reads the ride stream from its cursor (`catch_up`), because the shared
consumer group hands part of every market's requests to the other replicas."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from pricing.deps import PricingDeps
from pricing.replay import count_requests_in
from pricing.supply import sample_supply
from pricing.surge import compute_surge
from ridepulse.bus.faults import Backoff
from ridepulse.bus.metrics import EVENTS_PUBLISHED
from ridepulse.bus.producer import NOTIFICATION_MAXLEN
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import SurgeCell, SurgeUpdatedV1
from ridepulse.contracts.registry import make
from ridepulse.leases import Announcement, LeaseLost, fenced_hset, lease_key
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop
from ridepulse.settings import Settings


async def restore_published(deps: PricingDeps) -> None:
    """Start from what the read model shows, so a cell surging before a restart is cleared
    (HDEL + event) when its demand is gone, instead of staying stuck in the hash."""
    for market in deps.markets:
        await restore_market(deps, market)


CATCH_UP_CHUNK = 1000


async def restore_market(deps: PricingDeps, market: str) -> None:
    raw: Any = await deps.redis.hgetall(deps.keys(market).surge)
    surge = deps.markets[market]
    surge.state.published = {k.decode(): float(v) for k, v in raw.items() if float(v) > 1.0}


async def catch_up(deps: PricingDeps, market: str) -> int:
    """Count the ride requests added to the stream since the market's cursor; returns how many
    were new to the window (it counts a ride id once, so what the group also delivered is not
    counted twice)."""
    surge = deps.markets[market]
    stream = deps.keys(market).rides
    counted = 0
    while True:
        entries: Any = await deps.redis.xrange(
            stream, min="(" + surge.cursor, max="+", count=CATCH_UP_CHUNK
        )
        counted += count_requests_in(deps, market, entries)
        if entries:
            surge.cursor = entries[-1][0].decode()
        if len(entries) < CATCH_UP_CHUNK:
            return counted


async def take_over(deps: PricingDeps, market: str, at_ms: int) -> int:
    """A market this replica just got: rebuilt from scratch as at start; returns the demand."""
    surge = deps.fresh_market(market)
    await restore_market(deps, market)
    # the cursor is exclusive: one ms before the window's start keeps its first entries
    surge.cursor = f"{max(0, at_ms - surge.window.window_ms - 1)}-0"
    return await catch_up(deps, market)


async def run_leases(deps: PricingDeps, stop: asyncio.Event) -> None:
    """Keep this replica's market leases (ridepulse.leases); a gained market is rebuilt before
    it is published."""
    keeper = deps.leases
    if keeper is None:
        return
    log = get_logger(component="leases")

    async def gained(market: str) -> None:
        demand = await take_over(deps, market, now_ms())
        log.info("lease.gained", market=market, token=keeper.held.get(market), requests=demand)

    async def lost(market: str) -> None:
        log.info("lease.lost", market=market)

    await keeper.run(stop, now_ms, on_gained=gained, on_lost=lost)


async def _write(deps: PricingDeps, market: str, changed: dict[str, float]) -> None:
    keys = deps.keys(market)
    raised = {cell: m for cell, m in changed.items() if m > 1.0}
    cleared = [cell for cell, m in changed.items() if m <= 1.0]
    cells = [SurgeCell(cell=cell, multiplier=m) for cell, m in sorted(changed.items())]
    event = make(
        "surge.updated", f"market/{market}", SurgeUpdatedV1(market=market, cells=cells), deps.source
    )
    if deps.leases is None:
        await _write_unfenced(deps, keys.surge, raised, cleared)
        await deps.producer.publish(keys.surge_events, event)
        return
    if market not in deps.leases.held:
        raise LeaseLost(market)
    # the hash and the event in one fenced step: a replica paused past its lease neither
    # overwrites the new owner's cells nor announces its stale ones after the new owner's
    written = await fenced_hset(
        deps.redis,
        lease_key(deps.settings.key_prefix, "pricing", market),
        deps.leases.fence(market),
        keys.surge,
        {cell: str(m) for cell, m in raised.items()},
        cleared,
        Announcement(keys.surge_events, event.to_fields(), NOTIFICATION_MAXLEN),
    )
    if not written:
        deps.leases.drop(market)
        raise LeaseLost(market)
    EVENTS_PUBLISHED.labels(keys.surge_events).inc()


async def _write_unfenced(
    deps: PricingDeps, key: str, raised: dict[str, float], cleared: list[str]
) -> None:
    pipe = deps.redis.pipeline(transaction=False)
    if raised:
        pipe.hset(key, mapping=raised)  # type: ignore[arg-type]
    if cleared:
        pipe.hdel(key, *cleared)
    await pipe.execute()


def surge_for(
    settings: Settings, demand: dict[str, int], supply: dict[str, int]
) -> dict[str, float]:
    """compute_surge with the deployment's cap and smoothing."""
    return compute_surge(
        demand, supply, cap=settings.surge_cap, neighbour_weight=settings.surge_neighbour_weight
    )


async def publish_surge(deps: PricingDeps, market: str, at_ms: int) -> dict[str, float]:
    """One tick for one market at `at_ms`: supply read now, demand over the window; returns
    the cells whose multiplier changed."""
    surge = deps.markets[market]
    if deps.leases is not None:
        await catch_up(deps, market)
    await sample_supply(deps, market, at_ms)
    demand, supply = surge.window.counts(at_ms)
    computed = surge_for(deps.settings, demand, supply)
    before = dict(surge.state.published)
    changed = surge.state.update(computed)
    if not changed:
        return {}
    try:
        await _write(deps, market, changed)
    except LeaseLost:
        surge.state.published = before
        return {}
    except BaseException:
        surge.state.published = before
        raise
    return changed


async def run_publisher(deps: PricingDeps, stop: asyncio.Event) -> None:
    log = get_logger(component="surge")
    backoff = Backoff()
    while not stop.is_set():
        failed = False
        for market in list(deps.markets):
            if not deps.owns(market):
                continue  # another replica's market (leased mode)
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
                failed = True
                log.warning("surge.publish_failed", market=market, error=str(exc))
        interval_s = deps.settings.surge_interval_s
        if failed:
            await sleep_or_stop(stop, backoff.after_failure_s(interval_s))
            continue
        backoff.reset()
        await sleep_or_stop(stop, interval_s)
