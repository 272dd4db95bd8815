"""pricing's handlers feed the surge window: ride requests are demand, available drivers seen
in telemetry are supply. They only count; the publisher (pricing.publisher) turns counts into
multipliers on a clock, so a burst of events costs one computation, not one per event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pricing.deps import PricingDeps
from ridepulse.bus.handlers import HandlerTable, Outgoing
from ridepulse.contracts.events import DriverLocationV1, DriverStatusV1, Ping, RideRequestedV1
from ridepulse.contracts.registry import Event


def count_request(deps: PricingDeps, market: str, request: RideRequestedV1) -> bool:
    """One request of demand in its pickup cell; a request already counted is not counted again."""
    surge = deps.markets.get(market)
    if surge is None:
        return False
    cell = deps.cell_of(request.pickup.lat, request.pickup.lon)
    return surge.window.add_request(cell, request.requested_at, request.ride_id)


async def on_ride_requested(event: Event, deps: PricingDeps) -> Outgoing:
    assert isinstance(event.data, RideRequestedV1)
    count_request(deps, event.market, event.data)
    return None


async def on_driver_status(event: Event, deps: PricingDeps) -> Outgoing:
    """A driver going offline stops counting as supply at once, not a window later. Going
    available needs a position: its next ping counts it."""
    assert isinstance(event.data, DriverStatusV1)
    surge = deps.markets.get(event.market)
    if surge is not None and event.data.status == "offline":
        surge.window.remove_driver(event.data.driver_id)
    return None


async def on_locations(events: Sequence[Event], deps: PricingDeps) -> Outgoing:
    """Supply: the newest ping of each driver, counted where it is if the driver is available
    (one HMGET of statuses per market per batch), dropped otherwise (offered, on a ride)."""
    by_market: dict[str, dict[str, Ping]] = {}
    for event in events:
        assert isinstance(event.data, DriverLocationV1)
        newest = by_market.setdefault(event.market, {})
        for ping in event.data.pings:
            held = newest.get(ping.driver_id)
            if held is None or ping.ts > held.ts:
                newest[ping.driver_id] = ping
    for market, newest in by_market.items():
        surge = deps.markets.get(market)
        if surge is None or not newest:
            continue
        drivers = list(newest)
        statuses: Any = await deps.redis.hmget(deps.keys(market).driver_statuses, drivers)
        for driver_id, status in zip(drivers, statuses, strict=True):
            ping = newest[driver_id]
            if status == b"available":
                surge.window.add_driver(driver_id, deps.cell_of(ping.lat, ping.lon), ping.ts)
            else:
                surge.window.remove_driver(driver_id)
    return None


HANDLERS = HandlerTable(
    per_event={"ride.requested": on_ride_requested, "driver.status": on_driver_status},
)
SUPPLY_HANDLERS = HandlerTable(batch={"driver.location": on_locations})
