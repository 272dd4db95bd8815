"""What a driver's socket sends first: the offer the driver holds, or the ride it is on, as the
frame the live event made. The notifier fans out only what it reads after the socket
subscribes, so an offer made while the socket was down (an app in the background, a tunnel)
would otherwise never reach it."""

from __future__ import annotations

from typing import Any

import orjson

from ingest.deps import Deps
from ingest.routes_drivers import market_of_driver
from ridepulse.rides.projection import Ride

# the ride statuses in which a driver is assigned; `offered` is the offer, the rest are over
ASSIGNED = frozenset({"matched", "driver_arrived", "started"})


async def held_ride(deps: Deps, driver_id: str) -> Ride | None:
    """The ride the driver's projection names (offered to it or assigned), as stored now."""
    market = await market_of_driver(deps, driver_id) or deps.markets.default
    store = deps.stores[market.id]
    driver = await store.get_driver(driver_id)
    if driver is None or driver.ride_id is None:
        return None
    return await store.get(driver.ride_id)


def current_frame(ride: Ride, driver_id: str) -> bytes | None:
    """The frame of the step that put the ride where it is, with the live event's fields
    (offer_ride.lua, accept_offer.lua, move_trip.lua); None when the driver holds nothing."""
    data: dict[str, Any] = {"ride_id": ride.ride_id, "driver_id": driver_id}
    if ride.status == "offered" and ride.offer_driver_id == driver_id:
        data.update(
            pickup_eta_s=ride.pickup_eta_s,
            expires_at=ride.offer_expires_at,
            attempt=ride.attempt,
        )
    elif ride.status in ASSIGNED and ride.driver_id == driver_id:
        if ride.status == "matched" and ride.pickup_eta_s is not None:
            data["pickup_eta_s"] = ride.pickup_eta_s
    else:
        return None
    return orjson.dumps({"type": f"ride.{ride.status}", **data, "version": ride.version})


def superseded(ride_id: str, queued: list[bytes]) -> bool:
    """A ride event of this ride already queued: it was read after the socket subscribed, so it
    and every later one reach the driver; the stored state may be older than it by then."""
    for message in queued:
        frame = orjson.loads(message)
        if str(frame.get("type", "")).startswith("ride.") and frame.get("ride_id") == ride_id:
            return True
    return False
