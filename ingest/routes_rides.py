"""Rides: request (durable before 202, idempotent), read, and the rider/driver actions."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from ingest.deps import Deps, get_deps, json_body, principal
from ingest.durability import make_durable
from ingest.quotes import load_quote
from ingest.responses import JSON
from ingest.schemas import (
    ERRORS,
    RIDE_ACTION_LINKS,
    RIDE_LINKS,
    RideAccepted,
    RideOut,
    RideRequestIn,
    body_schema,
)
from ingest.validation import check_point
from ridepulse.auth import Principal
from ridepulse.contracts.envelope import new_event_id
from ridepulse.contracts.events import Point
from ridepulse.errors import Conflict, Forbidden, InvalidInput, NotFound
from ridepulse.fares import DEFAULT_FARES
from ridepulse.geo import haversine_m
from ridepulse.rides.projection import Ride

router = APIRouter(tags=["rides"])
Who = Annotated[Principal, Depends(principal)]
MAX_IDEMPOTENCY_KEY = 128


async def _ride(deps: Deps, ride_id: str) -> Ride:
    ride = await deps.store_for_ride(ride_id).get(ride_id)
    if ride is None:
        raise NotFound(f"ride {ride_id} not found")
    return ride


def _may_read(who: Principal, ride: Ride) -> bool:
    if who.role == "ops":
        return True
    if who.role == "rider":
        return ride.rider_id == who.subject
    if who.role == "driver":
        return who.subject in (ride.driver_id, ride.offer_driver_id)
    return False


@router.post(
    "/v1/rides",
    status_code=202,
    response_model=RideAccepted,
    responses={202: {"links": RIDE_LINKS}, **ERRORS},
    openapi_extra=body_schema(RideRequestIn),
    summary="Request a ride; the same Idempotency-Key returns the same ride",
)
async def request_ride(
    request: Request,
    who: Who,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
) -> JSON:
    deps = get_deps(request)
    who.require("rider")
    body = await json_body(request, 8192)
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    unknown = set(body) - {"pickup", "dropoff", "quote_id"}
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    pickup_lat, pickup_lon = check_point(body.get("pickup"), "pickup")
    dropoff_lat, dropoff_lon = check_point(body.get("dropoff"), "dropoff")
    market = deps.markets.locate(pickup_lat, pickup_lon)
    try:
        if deps.markets.locate(dropoff_lat, dropoff_lon).id != market.id:
            raise InvalidInput("dropoff is in another market", field="dropoff")
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field="dropoff") from None
    if haversine_m(pickup_lat, pickup_lon, dropoff_lat, dropoff_lon) < 50:
        raise InvalidInput("pickup and dropoff are the same place", field="dropoff")
    fare = surge = None
    quote_id = body.get("quote_id")
    if quote_id is not None:
        quote = await load_quote(deps, market.id, quote_id, who.subject)
        fare, surge = quote.fare, quote.surge
    store = deps.stores[market.id]
    ride, _created = await store.request_ride(
        ride_id=f"{market.id}-{new_event_id()}",
        rider_id=who.subject,
        pickup=Point(lat=pickup_lat, lon=pickup_lon),
        dropoff=Point(lat=dropoff_lat, lon=dropoff_lon),
        deadline_s=deps.settings.ride_deadline_s,
        idempotency_key=idempotency_key,
        quote_id=quote_id,
        fare=fare,
        surge=surge,
    )
    await make_durable(deps)
    return JSON({"ride_id": ride.ride_id, "status": ride.status}, status_code=202)


@router.get(
    "/v1/rides/{ride_id}",
    response_model=RideOut,
    responses={200: {"links": RIDE_ACTION_LINKS}, **ERRORS},
    summary="A ride's state and timeline",
)
async def get_ride(ride_id: str, request: Request, who: Who) -> JSON:
    ride = await _ride(get_deps(request), ride_id)
    if not _may_read(who, ride):
        raise Forbidden("not your ride")
    return JSON(ride.to_public())


@router.post(
    "/v1/rides/{ride_id}/cancel",
    response_model=RideOut,
    responses=ERRORS,
    summary="Cancel (rider before start; driver after match)",
)
async def cancel_ride(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    ride = await _ride(deps, ride_id)
    if who.role == "rider":
        if ride.rider_id != who.subject:
            raise Forbidden("not your ride")
        by = "rider"
    elif who.role == "driver":
        if ride.driver_id != who.subject:
            raise Forbidden("only the assigned driver may cancel")
        by = "driver"
    else:
        who.require("ops")
        by = "ops"
    updated = await deps.store_for_ride(ride_id).cancel(ride_id, by=by, actor_id=who.subject)  # type: ignore[arg-type]
    return JSON(updated.to_public())


def _driver_of_offer(who: Principal, ride: Ride) -> None:
    who.require("driver")
    if ride.offer_driver_id != who.subject and ride.driver_id != who.subject:
        if who.subject in ride.declined:  # offered to it once; timed out (server clock) or declined
            raise Conflict("your offer of this ride has expired or was declined")
        raise Forbidden("this ride is not offered to you")


def _assigned_driver(who: Principal, ride: Ride) -> None:
    who.require("driver")
    if ride.driver_id != who.subject:
        raise Forbidden("you are not this ride's driver")


@router.post(
    "/v1/rides/{ride_id}/accept",
    response_model=RideOut,
    responses=ERRORS,
    summary="The offered driver accepts",
)
async def accept(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _driver_of_offer(who, await _ride(deps, ride_id))
    return JSON((await deps.store_for_ride(ride_id).accept(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/decline",
    response_model=RideOut,
    responses=ERRORS,
    summary="The offered driver declines",
)
async def decline(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _driver_of_offer(who, await _ride(deps, ride_id))
    return JSON((await deps.store_for_ride(ride_id).decline(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/arrived",
    response_model=RideOut,
    responses=ERRORS,
    summary="The driver is at the pickup",
)
async def arrived(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _assigned_driver(who, await _ride(deps, ride_id))
    return JSON((await deps.store_for_ride(ride_id).arrived(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/start", response_model=RideOut, responses=ERRORS, summary="The trip starts"
)
async def start(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _assigned_driver(who, await _ride(deps, ride_id))
    return JSON((await deps.store_for_ride(ride_id).start(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/complete",
    response_model=RideOut,
    responses=ERRORS,
    summary="The trip ends; the fare is set",
)
async def complete(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    ride = await _ride(deps, ride_id)
    _assigned_driver(who, ride)
    fare = ride.fare if ride.quote_id and ride.fare is not None else _trip_fare(ride)
    done = await deps.store_for_ride(ride_id).complete(ride_id, who.subject, fare=fare)
    return JSON(done.to_public())


def _trip_fare(ride: Ride) -> float:
    """Without a quote: distance as the crow flies × detour, duration from the timeline."""
    started = dict(ride.timeline).get("started")
    duration_s = (time.time() * 1000 - started) / 1000 if started else 0.0
    distance_m = (
        haversine_m(ride.pickup.lat, ride.pickup.lon, ride.dropoff.lat, ride.dropoff.lon) * 1.3
    )
    return DEFAULT_FARES.fare(distance_m, duration_s, ride.surge or 1.0)
