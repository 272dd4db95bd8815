"""pricing's handler feeds the surge window with demand: each ride request in its pickup cell.
It only counts; the publisher (pricing.publisher) reads supply from matching's geo index
(pricing/supply.py) and turns counts into multipliers on a clock, so a burst of events costs one
computation, not one per event."""

from __future__ import annotations

from pricing.deps import PricingDeps
from ridepulse.bus.handlers import HandlerTable, Outgoing
from ridepulse.contracts.events import RideRequestedV1
from ridepulse.contracts.registry import Event


def count_request(deps: PricingDeps, market: str, request: RideRequestedV1) -> bool:
    """One request of demand in its pickup cell; a request already counted is not counted again."""
    surge = deps.markets.get(market)
    if surge is None:
        return False
    cell = deps.cell_of(request.pickup.lat, request.pickup.lon)
    return surge.window.add_request(cell, request.requested_at, request.ride_id)


async def on_ride_requested(event: Event, deps: PricingDeps) -> Outgoing:
    count_request(deps, event.market, event.payload(RideRequestedV1))
    return None


HANDLERS = HandlerTable(per_event={"ride.requested": on_ride_requested})
