"""Batch mode (`match_batch_window_s` > 0): every window, collect the rides waiting in a market
and the drivers free around them, solve the minimum-total-pickup-ETA assignment
(matching/assignment.py) and offer every pair at once with the same atomic offer script greedy
uses. A pair that loses a race (the driver taken, the ride moved) is simply not offered: the ride
stays `requested` and the next window tries it again, the same fallback greedy has in the sweeper.

Every replica may run it: the offer script reserves the driver and checks the ride's version in
one step, so two replicas solving the same batch make one offer per ride and per driver."""

from __future__ import annotations

import asyncio
from typing import Any

from matching.assignment import Pair, Spot, assign_min_total_eta, eta_matrix
from matching.handlers import MatchingDeps
from ridepulse.contracts.envelope import derived_event_id
from ridepulse.logs import get_logger
from ridepulse.periodic import every
from ridepulse.pickups import SEARCH_RADII_M, nearby_available
from ridepulse.rides.clock import server_time_ms
from ridepulse.rides.projection import Ride

BATCH_RIDES = 200  # waiting rides per market per window (the sweeper's page size)
CANDIDATES_PER_RIDE = 30  # nearest free drivers per ride that enter the matrix


async def waiting_rides(deps: MatchingDeps, market: str, now: int) -> list[Ride]:
    """Rides still `requested` and before their deadline, oldest deadline first."""
    store, keys = deps.stores[market], deps.keys(market)
    ids: Any = await deps.redis.zrangebyscore(
        keys.open_rides, now, "+inf", start=0, num=BATCH_RIDES
    )
    rides = await asyncio.gather(*(store.get(raw.decode()) for raw in ids))
    return [r for r in rides if r is not None and r.status == "requested"]


async def plan_batch(deps: MatchingDeps, market: str, rides: list[Ride]) -> list[Pair]:
    """Search the free drivers around each ride, then solve the assignment on pickup ETA."""
    keys = deps.keys(market)
    found = await asyncio.gather(
        *(
            nearby_available(
                deps.redis,
                keys,
                ride.pickup.lat,
                ride.pickup.lon,
                radius_m=SEARCH_RADII_M[-1],
                fresh_within_ms=int(deps.settings.driver_stale_s * 1000),
                exclude=ride.declined,
                limit=CANDIDATES_PER_RIDE,
            )
            for ride in rides
        )
    )
    drivers: dict[str, Spot] = {}
    candidates: dict[str, list[str]] = {}
    for ride, nearby in zip(rides, found, strict=True):
        candidates[ride.ride_id] = [d.driver_id for d in nearby]
        for d in nearby:
            drivers.setdefault(d.driver_id, Spot(d.driver_id, d.lat, d.lon))
    pickups = [Spot(r.ride_id, r.pickup.lat, r.pickup.lon) for r in rides]
    columns = sorted(drivers.values(), key=lambda s: s.id)
    matrix = eta_matrix(pickups, columns, candidates, deps.speeds[market].travel_time_s)
    return assign_min_total_eta([p.id for p in pickups], [d.id for d in columns], matrix)


async def offer_pairs(deps: MatchingDeps, market: str, rides: list[Ride], pairs: list[Pair]) -> int:
    """Offer every pair at once; returns how many pairs hold their offer (the rest lost a race).
    A replica offering a pair another already offered counts it too: the step is a no-op then."""
    store = deps.stores[market]
    by_id = {r.ride_id: r for r in rides}

    async def offer(pair: Pair) -> bool:
        ride = by_id[pair.ride_id]
        offered = await store.offer(
            ride_id=ride.ride_id,
            driver_id=pair.driver_id,
            pickup_eta_s=round(pair.pickup_eta_s, 1),
            offer_timeout_s=deps.settings.offer_timeout_s,
            expected_version=ride.version,
            # one id per ride version and driver: a replica offering the same pair is a no-op
            event_id=derived_event_id(ride.ride_id, f"batch:{ride.version}:{pair.driver_id}"),
        )
        return offered is not None

    return sum(await asyncio.gather(*(offer(p) for p in pairs)))


async def batch_once(deps: MatchingDeps) -> dict[str, int]:
    """One window's pass over every market: waiting rides, the assignment, the offers."""
    now = await server_time_ms(deps.redis)
    totals = {"waiting": 0, "assigned": 0, "offered": 0}
    for market in deps.stores:
        rides = await waiting_rides(deps, market, now)
        if not rides:
            continue
        pairs = await plan_batch(deps, market, rides)
        totals["waiting"] += len(rides)
        totals["assigned"] += len(pairs)
        totals["offered"] += await offer_pairs(deps, market, rides, pairs)
    return totals


async def run_batcher(deps: MatchingDeps, stop: asyncio.Event) -> None:
    """A pass every `match_batch_window_s`, on a fixed cadence: a ride requested just after a
    pass is offered at the next, so request→offered stays within the window plus one pass."""
    log = get_logger(component="batcher")

    async def one_pass() -> None:
        totals = await batch_once(deps)
        if totals["waiting"]:
            log.debug("matching.batched", **totals)

    await every(
        stop,
        deps.settings.match_batch_window_s,
        one_pass,
        log=log,
        failed="matching.batch_failed",
        fixed_cadence=True,
    )
