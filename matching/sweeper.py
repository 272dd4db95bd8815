"""Time-driven transitions: offers that time out, rides past their deadline, waiting rides
retried as drivers free up, and drivers gone silent dropped from the index.

Every replica may run it: each step is an atomic, version-checked script, so two sweepers
racing on the same ride make one transition and one no-op."""

from __future__ import annotations

import asyncio
from typing import Any

from matching.geo_index import drop_stale
from matching.handlers import MatchingDeps, try_offer
from ridepulse.contracts.envelope import derived_event_id, now_ms
from ridepulse.errors import Conflict
from ridepulse.logs import get_logger
from ridepulse.periodic import every
from ridepulse.rides.clock import server_time_ms

SWEEP_INTERVAL_S = 0.25
RETRY_WAITING_EVERY_MS = 1000
BATCH = 200
# Drivers that went stale since the last sweep leave the geo index; every so often a full pass
# also catches those a ride step put back (a silent driver released by its ride re-enters the
# index from its last position; the search skips it, but it would crowd out fresh candidates).
FULL_STALE_PASS_EVERY_MS = 30_000


async def time_out_offers(deps: MatchingDeps, market: str, now: int) -> int:
    store, keys = deps.stores[market], deps.keys(market)
    due: Any = await deps.redis.zrangebyscore(keys.offer_timeouts, "-inf", now, start=0, num=BATCH)
    count = 0
    for raw in due:
        ride = await store.get(raw.decode())
        if ride is None or ride.status != "offered" or ride.offer_driver_id is None:
            await deps.redis.zrem(keys.offer_timeouts, raw)
            continue
        try:
            await store.decline(
                ride.ride_id,
                ride.offer_driver_id,
                reason="timeout",
                event_id=derived_event_id(ride.ride_id, f"timeout:{ride.attempt}"),
            )
            count += 1
        except Conflict:
            pass  # accepted or declined meanwhile
    return count


async def expire_overdue(deps: MatchingDeps, market: str, now: int) -> int:
    store, keys = deps.stores[market], deps.keys(market)
    overdue: Any = await deps.redis.zrangebyscore(keys.open_rides, "-inf", now, start=0, num=BATCH)
    count = 0
    for raw in overdue:
        ride_id = raw.decode()
        if await store.expire(ride_id, event_id=derived_event_id(ride_id, "expire")) is not None:
            count += 1
    return count


async def retry_waiting(deps: MatchingDeps, market: str, now: int) -> int:
    """Rides still `requested` (nobody was free): try again as drivers become available."""
    store, keys = deps.stores[market], deps.keys(market)
    waiting: Any = await deps.redis.zrangebyscore(keys.open_rides, now, "+inf", start=0, num=BATCH)
    offered = 0
    local_now = now_ms()  # the throttle compares with try_offer's stamps, taken on this host
    for raw in waiting:
        ride_id = raw.decode()
        if local_now - deps.last_attempt_ms.get(ride_id, 0) < RETRY_WAITING_EVERY_MS:
            continue
        ride = await store.get(ride_id)
        if ride is None or ride.status != "requested":
            continue
        cause = derived_event_id(ride_id, f"retry:{ride.version}:{now // RETRY_WAITING_EVERY_MS}")
        if await try_offer(deps, ride, cause) is not None:
            offered += 1
    if len(deps.last_attempt_ms) > 50_000:
        deps.last_attempt_ms.clear()
    return offered


async def sweep_once(
    deps: MatchingDeps, stale_marks: dict[str, int] | None = None
) -> dict[str, int]:
    """One pass over every market, on the server's clock (offers and deadlines were stamped
    with it). `stale_marks` (market → the stale cutoff of the previous pass) lets the stale
    drop read only the drivers gone silent since; absent or old, the pass is a full one."""
    now = await server_time_ms(deps.redis)
    marks = {} if stale_marks is None else stale_marks
    totals = {"timed_out": 0, "expired": 0, "retried": 0, "stale": 0}
    for market in deps.stores:
        totals["timed_out"] += await time_out_offers(deps, market, now)
        totals["expired"] += await expire_overdue(deps, market, now)
        if deps.settings.match_batch_window_s == 0:  # in batch mode the batcher retries them
            totals["retried"] += await retry_waiting(deps, market, now)
        stale_before = now - int(deps.settings.driver_stale_s * 1000)
        since = marks.get(market)
        if since is not None and (since // FULL_STALE_PASS_EVERY_MS) != (
            stale_before // FULL_STALE_PASS_EVERY_MS
        ):
            since = None
        totals["stale"] += await drop_stale(
            deps.redis, deps.keys(market), stale_before, since_ms=since
        )
        marks[market] = stale_before
    return totals


async def run_sweeper(deps: MatchingDeps, stop: asyncio.Event) -> None:
    log = get_logger(component="sweeper")
    stale_marks: dict[str, int] = {}

    async def one_pass() -> None:
        totals = await sweep_once(deps, stale_marks)
        if any(totals.values()):
            log.debug("matching.swept", **totals)

    await every(stop, SWEEP_INTERVAL_S, one_pass, log=log, failed="matching.sweep_failed")
