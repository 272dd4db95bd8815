"""Drivers gone silent, judged on the server clock (`drivers_seen`: when each last ping arrived),
counting only the time the server could hear them (ridepulse/unheard.py: not while the group
stamping `drivers_seen` is behind and ingest sheds their pings).

Two steps, in this order, so memory levels off as drivers come and go and no ride is left with
a driver who is not there:
- lost (`driver_lost_s`): a driver holding a matched or started ride loses it through the
  table's lose_driver rows (re-offered before pickup, cancelled on trip); it goes offline.
- departed (`driver_evict_s`): a driver holding nothing is forgotten (evict_drivers.lua). A
  driver still holding a ride is skipped, never evicted: the step above frees it first.
Both re-check the silence inside their script, so a ping landing meanwhile keeps the driver."""

from __future__ import annotations

from typing import Any

from ridepulse.contracts.envelope import derived_event_id
from ridepulse.errors import Conflict
from ridepulse.rides.store import RideStore

PAGE = 500  # drivers per read and per eviction script: about a millisecond of server time
ASSIGNED_DRIVER_STATUSES = (b"en_route", b"on_trip")  # an offer times out on its own


async def release_lost_rides(store: RideStore, cutoff_ms: int, lost_s: float) -> int:
    """Take rides back from drivers last heard at `cutoff_ms` or before (at least `lost_s`
    ago, more when they could not be heard for a while: ridepulse/unheard.py); returns how
    many rides moved."""
    redis, keys = store.redis, store.keys
    cutoff = cutoff_ms
    moved = offset = 0
    while True:
        silent: Any = await redis.zrangebyscore(
            keys.drivers_seen, "-inf", cutoff, start=offset, num=PAGE
        )
        if not silent:
            return moved
        statuses: Any = await redis.hmget(keys.driver_statuses, silent)
        for raw_id, status in zip(silent, statuses, strict=True):
            if status in ASSIGNED_DRIVER_STATUSES:
                moved += await _release(store, raw_id.decode(), lost_s)
        if len(silent) < PAGE:
            return moved
        offset += PAGE


async def _release(store: RideStore, driver_id: str, lost_s: float) -> int:
    raw: Any = await store.redis.hget(store.keys.driver(driver_id), "ride_id")
    ride_id = raw.decode() if raw else ""
    if not ride_id:
        return 0
    try:
        ride = await store.lose_driver(
            ride_id,
            driver_id,
            silence_s=lost_s,
            event_id=derived_event_id(ride_id, f"driver_lost:{driver_id}"),
        )
    except Conflict:
        return 0  # the ride moved on between our read and the step
    return 0 if ride is None else 1


async def evict_departed(store: RideStore, cutoff_ms: int, evict_s: float) -> int:
    """Forget drivers that hold nothing, last heard at `cutoff_ms` or before (at least
    `evict_s` ago); returns how many were evicted."""
    redis, keys = store.redis, store.keys
    cutoff = cutoff_ms
    evicted = offset = 0
    while True:
        silent: Any = await redis.zrangebyscore(
            keys.drivers_seen, "-inf", cutoff, start=offset, num=PAGE
        )
        if not silent:
            return evicted
        gone = await store.evict_drivers([d.decode() for d in silent], silence_s=evict_s)
        evicted += len(gone)
        if len(silent) < PAGE:
            return evicted
        offset += len(silent) - len(gone)  # the evicted left the set; the kept stay ahead
