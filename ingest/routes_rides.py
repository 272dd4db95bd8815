"""Rides: request (durable before 202, idempotent, quote-bound, limited), read, and the
rider/driver actions. A ride the caller may not see answers 404, like a missing one."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Request

from ingest.deps import Deps, get_deps, json_body, principal
from ingest.durability import make_durable, pinned, run_script
from ingest.quotes import checked_quote_id, pickup_surge, trip_cells
from ingest.responses import JSON
from ingest.schemas import (
    RIDE_ACTION_LINKS,
    RIDE_LINKS,
    RideAccepted,
    RideOut,
    RideRequestIn,
    body_schema,
)
from ingest.validation import check_point, check_trip
from ridepulse.auth import Principal
from ridepulse.contracts.events import Point
from ridepulse.errors import Conflict, Forbidden, InvalidInput, NotFound
from ridepulse.fares import trip_fare
from ridepulse.openapi_errors import error_responses
from ridepulse.rides.ids import new_ride_id
from ridepulse.rides.projection import Ride
from ridepulse.rides.state import TERMINAL
from ridepulse.rides.store import MAX_IDEMPOTENCY_KEY

router = APIRouter(tags=["rides"])
Who = Annotated[Principal, Depends(principal)]
# What each route can answer besides its success (ridepulse.openapi_errors): no more, no less.
REQUEST_ERRORS = error_responses(
    401,
    403,
    404,
    409,
    413,
    415,
    422,
    429,
    503,
    retry_after=(429, 503),
    descriptions={
        404: "The ride this Idempotency-Key made is gone",
        409: "The ride exists already",
        429: "Past the rider's requests per minute or open rides; retry after `Retry-After`",
    },
)
READ_ERRORS = error_responses(401, 404, 503)
CANCEL_ERRORS = error_responses(401, 403, 404, 409, 429, 503)
ACTION_ERRORS = error_responses(401, 403, 404, 409, 503)


async def _ride(deps: Deps, ride_id: str, who: Principal, *, offered_once: bool = False) -> Ride:
    """The ride, if `who` may see it; NotFound for a missing ride AND for someone else's, so
    the answer never tells a stranger that a ride id exists. With `offered_once` (accept,
    decline) a driver the ride was offered to before also gets through, to be told 409."""
    ride = await deps.store_for_ride(ride_id).get(ride_id)
    if ride is None:
        raise NotFound(f"ride {ride_id} not found")
    knew = offered_once and who.role == "driver" and who.subject in ride.declined
    if not (_may_read(who, ride) or knew):
        raise NotFound(f"ride {ride_id} not found")
    return ride


def request_hash(
    pickup: tuple[float, float], dropoff: tuple[float, float], quote_id: str | None
) -> str:
    """The request as the idempotency record remembers it: what the server validated, not the
    body's spelling. Hashing the raw body made a retry with `"quote_id": null` (the OpenAPI
    example's) another request than the first without it: a 422 for the same ride."""
    canonical = orjson.dumps({"pickup": pickup, "dropoff": dropoff, "quote_id": quote_id})
    return hashlib.sha256(canonical).hexdigest()


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
    responses={202: {"links": RIDE_LINKS}, **REQUEST_ERRORS},
    openapi_extra=body_schema(RideRequestIn),
    summary="Request a ride; the same Idempotency-Key returns the same ride",
)
async def request_ride(
    request: Request,
    who: Who,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)
    ] = None,
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
    pickup = (pickup_lat, pickup_lon)
    market = check_trip(deps.markets, pickup, (dropoff_lat, dropoff_lon), ("pickup", "dropoff"))
    # Counted once the pickup names the market: every key this request touches is in its slot.
    await deps.limit_rider(
        who, market.id, "ride requests", deps.settings.rider_ride_requests_per_min
    )
    quote_id = checked_quote_id(body.get("quote_id"))
    digest = request_hash((pickup_lat, pickup_lon), (dropoff_lat, dropoff_lon), quote_id)
    # without a quote, the surge a quote would have said (leaving it out skipped surge)
    surge = None if quote_id else await pickup_surge(deps, market.id, pickup)
    store = deps.stores[market.id]
    ride_id = new_ride_id(market.id)
    # The script and WAITAOF share one connection: WAITAOF only covers that connection's writes.
    async with pinned(deps.redis, store.keys.ride(ride_id)) as pin:
        ride, created = await store.request_ride(
            ride_id=ride_id,
            rider_id=who.subject,
            pickup=Point(lat=pickup_lat, lon=pickup_lon),
            dropoff=Point(lat=dropoff_lat, lon=dropoff_lon),
            deadline_s=deps.settings.ride_deadline_s,
            idempotency_key=idempotency_key,
            body_hash=digest,
            quote_id=quote_id,
            pickup_cells=trip_cells(pickup_lat, pickup_lon) if quote_id else (),
            dropoff_cells=trip_cells(dropoff_lat, dropoff_lon) if quote_id else (),
            surge=surge,
            open_rides_limit=deps.settings.rider_open_rides,
            run=lambda script, keys, args: run_script(pin, script, keys, args),
        )
        await make_durable(deps, pin)
    # A replay answers what the first request was answered: the ride id, `requested`.
    status = ride.status if created else "requested"
    return JSON({"ride_id": ride.ride_id, "status": status}, status_code=202)


@router.get(
    "/v1/rides/{ride_id}",
    response_model=RideOut,
    responses={200: {"links": RIDE_ACTION_LINKS}, **READ_ERRORS},
    summary="A ride's state and timeline",
)
async def get_ride(ride_id: str, request: Request, who: Who) -> JSON:
    return JSON((await _ride(get_deps(request), ride_id, who)).to_public())


@router.post(
    "/v1/rides/{ride_id}/cancel",
    response_model=RideOut,
    responses=CANCEL_ERRORS,
    summary="Cancel (rider before start; driver after match)",
)
async def cancel_ride(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    market = deps.market_of_ride(ride_id)  # the ride id's market: its slot holds the counter
    await deps.limit_rider(who, market.id, "cancels", deps.settings.rider_cancels_per_min)
    ride = await _ride(deps, ride_id, who)
    if who.role == "rider":
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
        if who.subject in ride.declined:  # offered to it once: timed out, declined or cancelled
            if ride.status in TERMINAL:
                raise Conflict(f"ride is {ride.status}; your offer of it no longer stands")
            raise Conflict("your offer of this ride has expired or was declined")
        raise Forbidden("this ride is not offered to you")


def _assigned_driver(who: Principal, ride: Ride) -> None:
    who.require("driver")
    if ride.driver_id != who.subject:
        raise Forbidden("you are not this ride's driver")


@router.post(
    "/v1/rides/{ride_id}/accept",
    response_model=RideOut,
    responses=ACTION_ERRORS,
    summary="The offered driver accepts",
)
async def accept(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _driver_of_offer(who, await _ride(deps, ride_id, who, offered_once=True))
    return JSON((await deps.store_for_ride(ride_id).accept(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/decline",
    response_model=RideOut,
    responses=ACTION_ERRORS,
    summary="The offered driver declines",
)
async def decline(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _driver_of_offer(who, await _ride(deps, ride_id, who, offered_once=True))
    return JSON((await deps.store_for_ride(ride_id).decline(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/arrived",
    response_model=RideOut,
    responses=ACTION_ERRORS,
    summary="The driver is at the pickup",
)
async def arrived(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _assigned_driver(who, await _ride(deps, ride_id, who))
    return JSON((await deps.store_for_ride(ride_id).arrived(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/start",
    response_model=RideOut,
    responses=ACTION_ERRORS,
    summary="The trip starts",
)
async def start(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    _assigned_driver(who, await _ride(deps, ride_id, who))
    return JSON((await deps.store_for_ride(ride_id).start(ride_id, who.subject)).to_public())


@router.post(
    "/v1/rides/{ride_id}/complete",
    response_model=RideOut,
    responses=ACTION_ERRORS,
    summary="The trip ends; the fare is set",
)
async def complete(ride_id: str, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    ride = await _ride(deps, ride_id, who)
    _assigned_driver(who, ride)
    fare = ride.fare if ride.quote_id and ride.fare is not None else _trip_fare(deps, ride)
    done = await deps.store_for_ride(ride_id).complete(ride_id, who.subject, fare=fare)
    return JSON(done.to_public())


def _trip_fare(deps: Deps, ride: Ride) -> float:
    """Without a quote: distance as the crow flies × detour, duration from the timeline, at the
    rate card of the pickup's market."""
    started = dict(ride.timeline).get("started")
    duration_s = (time.time() * 1000 - started) / 1000 if started else 0.0
    table = deps.markets.locate(ride.pickup.lat, ride.pickup.lon).fares
    return trip_fare(ride.pickup, ride.dropoff, duration_s, ride.surge or 1.0, table)
