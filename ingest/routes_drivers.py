"""Driver status and the driver's own view (location, status, current offer and ride)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ingest.deps import Deps, get_deps, json_body, principal
from ingest.responses import JSON
from ingest.schemas import DriverId, DriverOut, DriverStatusIn, DriverView, body_schema
from ingest.validation import check_id
from ridepulse.auth import Principal
from ridepulse.errors import Conflict, Forbidden, InvalidInput, NotFound
from ridepulse.markets import Market
from ridepulse.openapi_errors import error_responses
from ridepulse.positions import parse_position

router = APIRouter(tags=["drivers"])
Who = Annotated[Principal, Depends(principal)]


def _self_or_ops(who: Principal, driver_id: str) -> None:
    if who.role == "ops":
        return
    who.require("driver")
    if who.subject != driver_id:
        raise Forbidden("a driver may only act for itself")


async def market_of_driver(deps: Deps, driver_id: str) -> Market | None:
    """The market the driver last pinged from, as ingest recorded it when it accepted the ping
    (ingest.driver_homes), or the one where it still holds a ride (ingest.market_moves); None
    if it has not pinged lately. With one market, that market."""
    if deps.moves is None:
        return deps.markets.default
    market_id = await deps.moves.market_of(deps.redis, driver_id)
    return deps.markets.by_id.get(market_id or "")


@router.put(
    "/v1/drivers/{driver_id}/status",
    response_model=DriverOut,
    responses=error_responses(401, 403, 409, 413, 415, 422, 503),
    openapi_extra=body_schema(DriverStatusIn),
    summary="Go available or offline",
)
async def put_status(driver_id: DriverId, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    check_id(driver_id, "driver_id")
    _self_or_ops(who, driver_id)
    body = await json_body(request, 1024)
    if isinstance(body, dict) and (unknown := sorted(set(body) - {"status"})):
        raise InvalidInput(f"unknown field {unknown[0]}", field=unknown[0])
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("available", "offline"):
        raise InvalidInput("status must be 'available' or 'offline'", field="status")
    market = await market_of_driver(deps, driver_id)
    if market is None:
        if status == "available":
            # with several markets, "available" means available where the driver is; a driver
            # set available in a guessed market would never be offered a ride (issue 10 race)
            raise Conflict(
                "no recent location for this driver: send a location ping, then go available",
                field="status",
            )
        market = deps.markets.default  # offline: harmless anywhere, and idempotent
    driver = await deps.stores[market.id].set_driver_status(driver_id, status)
    return JSON(driver.to_public())


@router.get(
    "/v1/drivers/{driver_id}",
    response_model=DriverView,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Location, status, offer and ride",
)
async def get_driver(driver_id: DriverId, request: Request, who: Who) -> JSON:
    deps = get_deps(request)
    check_id(driver_id, "driver_id")
    _self_or_ops(who, driver_id)
    market = await market_of_driver(deps, driver_id) or deps.markets.default
    store = deps.stores[market.id]
    driver = await store.get_driver(driver_id)
    raw_position: Any = await deps.redis.hget(deps.keys(market.id).positions, driver_id)
    if driver is None and raw_position is None:
        raise NotFound(f"driver {driver_id} not found")
    view: dict[str, Any] = (
        driver.to_public()
        if driver
        else {"driver_id": driver_id, "status": "offline", "ride_id": None}
    )
    view["market"] = market.id
    view["offer"] = None
    if driver is not None and driver.ride_id and driver.status == "offered":
        ride = await store.get(driver.ride_id)
        if ride is not None and ride.status == "offered" and ride.offer_driver_id == driver_id:
            view["offer"] = {
                "ride_id": ride.ride_id,
                "expires_at": ride.offer_expires_at,
                "pickup": {"lat": ride.pickup.lat, "lon": ride.pickup.lon},
                "dropoff": {"lat": ride.dropoff.lat, "lon": ride.dropoff.lon},
                "pickup_eta_s": ride.pickup_eta_s,
            }
    position = parse_position(raw_position)
    if position is not None:
        view.update(lat=position.lat, lon=position.lon, ts=position.ts, heading=position.heading)
    return JSON(view)
