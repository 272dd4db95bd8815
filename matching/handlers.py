"""Matching's handlers: keep the geo index fresh, and offer each waiting ride to the best
candidate. The offer itself (reserve driver + move ride + announce) is one atomic script in
ridepulse.rides, so concurrent replicas and redeliveries can never double-assign a driver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from matching.geo_filter import PositionFilter
from matching.geo_index import update_positions
from matching.planner import OfferPlan
from ridepulse.bus.handlers import HandlerTable, Outgoing
from ridepulse.contracts.envelope import derived_event_id, now_ms
from ridepulse.contracts.events import DriverLocationV1, RideRequestedV1, RideUnmatchedV1
from ridepulse.contracts.registry import Event
from ridepulse.keys import MarketKeys
from ridepulse.pickups import nearby_available
from ridepulse.rides.ids import market_of_ride
from ridepulse.rides.projection import Ride
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache


@dataclass
class MatchingDeps:
    redis: aioredis.Redis
    settings: Settings
    stores: dict[str, RideStore]
    speeds: dict[str, SpeedCache]
    last_attempt_ms: dict[str, int] = field(default_factory=dict)
    geo_filter: PositionFilter | None = None  # matching-geo: pings that change nothing skipped

    def keys(self, market: str) -> MarketKeys:
        return MarketKeys(market, self.settings.key_prefix)


async def on_locations(events: Sequence[Event], deps: MatchingDeps) -> Outgoing:
    by_market: dict[str, list[Any]] = {}
    for event in events:
        # ingest located every ping of an entry in the market of the stream it went to
        by_market.setdefault(event.market, []).extend(event.payload(DriverLocationV1).pings)
    for market, pings in by_market.items():
        await update_positions(deps.redis, deps.keys(market), pings, deps.geo_filter)
    return None


async def try_offer(deps: MatchingDeps, ride: Ride, cause_id: str) -> Ride | None:
    """Offer the ride to the best available candidate; None when nobody could take it now.
    The decisions are matching.planner's; this loop only searches and offers."""
    store = deps.stores[ride.market]
    keys = deps.keys(ride.market)
    deps.last_attempt_ms[ride.ride_id] = now_ms()
    speed = deps.speeds[ride.market]
    plan = OfferPlan.of((ride.pickup.lat, ride.pickup.lon), ride.declined)
    while (radius_m := plan.next_radius_m()) is not None:
        nearby = await nearby_available(
            deps.redis,
            keys,
            ride.pickup.lat,
            ride.pickup.lon,
            radius_m=radius_m,
            fresh_within_ms=int(deps.settings.driver_stale_s * 1000),
            exclude=plan.excluded,
        )
        for candidate in plan.candidates(nearby, speed):
            offered = await store.offer(
                ride_id=ride.ride_id,
                driver_id=candidate.driver_id,
                pickup_eta_s=round(candidate.pickup_eta_s, 1),
                offer_timeout_s=deps.settings.offer_timeout_s,
                expected_version=ride.version,
                event_id=derived_event_id(
                    cause_id, f"offer:{ride.attempt + 1}:{candidate.driver_id}"
                ),
            )
            if offered is not None:
                deps.last_attempt_ms.pop(ride.ride_id, None)
                return offered
            current = await store.get(ride.ride_id)
            if current is None or current.status != "requested" or current.version != ride.version:
                return None  # someone else moved the ride: nothing left to do here
            plan.lost(candidate.driver_id)
    return None  # out of attempts or of drivers: the sweeper retries as drivers free up


async def on_ride_waiting(event: Event, deps: MatchingDeps) -> Outgoing:
    """ride.requested and ride.unmatched both mean: this ride needs a driver now."""
    if deps.settings.match_batch_window_s > 0:
        return None  # batch mode: the batcher offers every waiting ride at its next window
    ride_id = event.payload(RideRequestedV1, RideUnmatchedV1).ride_id
    store = deps.stores.get(market_of_ride(ride_id) or "")
    if store is None:
        return None
    ride = await store.get(ride_id)
    if ride is None or ride.status != "requested":
        return None  # stale or duplicate delivery: the ride has moved on
    await try_offer(deps, ride, event.id)
    return None


HANDLERS = HandlerTable(
    per_event={"ride.requested": on_ride_waiting, "ride.unmatched": on_ride_waiting},
)
GEO_HANDLERS = HandlerTable(batch={"driver.location": on_locations})
