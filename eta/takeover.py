"""Leased mode (``settings.leases``, docs/scaling.md): the markets this replica holds change
as replicas come and go. A market just taken is rebuilt as at start — speeds from the published
hash, active rides from the ride projections — before its consumers read again; a market lost
is forgotten (its consumers stop at their gate, eta.service)."""

from __future__ import annotations

import asyncio

from eta.active import load_active
from eta.deps import EtaDeps
from eta.speeds import persist_speeds, restore_market_speeds
from ridepulse.contracts.envelope import now_ms
from ridepulse.logs import get_logger


async def take_over(deps: EtaDeps, market: str) -> int:
    """Rebuild ``market`` from its read models; returns the rides now tracked there."""
    deps.fresh_model(market)
    await restore_market_speeds(deps, market)
    deps.rides.forget_market(market)
    active = await load_active(deps.redis, deps.keys(market))
    for ride in active:
        deps.rides.track(ride)
    return len(active)


def forget(deps: EtaDeps, market: str) -> None:
    deps.rides.forget_market(market)
    deps.learned.discard(market)


async def run_leases(deps: EtaDeps, stop: asyncio.Event) -> None:
    """Keep this replica's market leases (ridepulse.leases); at stop, persist what was learned
    while the markets are still held, then give them back."""
    keeper = deps.leases
    if keeper is None:
        return
    log = get_logger(component="leases")

    async def gained(market: str) -> None:
        # the gate opens only now: while rebuilding, the market is not yet in `held`
        token = keeper.held.pop(market)
        try:
            rides = await take_over(deps, market)
        finally:
            keeper.held[market] = token  # held again even on error, so the keeper releases it
        log.info("lease.gained", market=market, token=token, active_rides=rides)

    async def lost(market: str) -> None:
        forget(deps, market)
        log.info("lease.lost", market=market)

    async def last_write() -> None:
        await persist_speeds(deps)

    await keeper.run(stop, now_ms, on_gained=gained, on_lost=lost, on_stop=last_write)
