"""Telemetry in: one ping over HTTP, a batch for fleets, or a driver's WebSocket."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ingest.deps import Deps, get_deps, json_body
from ingest.lean_route import LeanRoute
from ingest.schemas import (
    DriverId,
    PingAccepted,
    PingIn,
    TelemetryAccepted,
    TelemetryBatchIn,
    body_schema,
    error_responses,
)
from ingest.shedding import refuse_if_shedding
from ingest.validation import check_id, check_ping
from ridepulse.auth import Principal
from ridepulse.contracts.envelope import now_ms
from ridepulse.errors import Forbidden, InvalidInput, Overloaded, RidePulseError
from ridepulse.keys import MarketKeys

router = APIRouter(tags=["telemetry"])
ping_router = APIRouter(tags=["telemetry"], route_class=LeanRoute)  # the hottest route
ACCEPTED = Response(b'{"accepted":1}', status_code=202, media_type="application/json")
PING_BODY_LIMIT = 4096


def authorize_driver(deps: Deps, request: Request, driver_id: str) -> Principal:
    """A driver acts only for itself (no BOLA); fleet and ops may act for any driver."""
    who = deps.authenticate(request.headers.get("authorization"))
    if who.role == "driver":
        if who.subject != driver_id:
            raise Forbidden("a driver may only act for itself")
    elif who.role not in ("fleet", "ops"):
        raise Forbidden(f"role {who.role!r} may not send telemetry")
    return who


async def accept_ping(deps: Deps, driver_id: str, body: Any) -> None:
    refuse_if_shedding(deps)
    ping = check_ping(body, driver_id, now_ms())
    market = deps.markets.locate(ping["lat"], ping["lon"])
    if not deps.limiter.allow(driver_id):
        raise Overloaded(f"driver {driver_id} exceeds {deps.limiter.rate_per_s:g} pings/s")
    await deps.batcher.submit(MarketKeys(market.id, deps.settings.key_prefix).telemetry, [ping])


@ping_router.post(
    "/v1/drivers/{driver_id}/location",
    status_code=202,
    response_model=PingAccepted,
    responses=error_responses(401, 403, 413, 422, 429, 503),
    openapi_extra=body_schema(PingIn),
    summary="One location ping of one driver",
)
async def post_location(driver_id: DriverId, request: Request) -> Response:
    deps = get_deps(request)
    check_id(driver_id, "driver_id")
    authorize_driver(deps, request, driver_id)
    await accept_ping(deps, driver_id, await json_body(request, PING_BODY_LIMIT))
    return ACCEPTED


@router.post(
    "/v1/telemetry",
    status_code=202,
    response_model=TelemetryAccepted,
    responses=error_responses(401, 403, 413, 422, 429, 503),
    openapi_extra=body_schema(TelemetryBatchIn),
    summary="A batch of pings for many drivers (fleet gateways and simulators)",
)
async def post_telemetry(request: Request) -> Response:
    deps = get_deps(request)
    deps.authenticate(request.headers.get("authorization")).require("fleet", "ops")
    refuse_if_shedding(deps)
    body = await json_body(request)
    pings_in = body.get("pings") if isinstance(body, dict) else None
    if not isinstance(pings_in, list):
        raise InvalidInput('body must be {"pings": [...]}', field="pings")
    if len(pings_in) > deps.settings.max_batch_pings:
        raise InvalidInput(
            f"at most {deps.settings.max_batch_pings} pings per batch", field="pings"
        )
    now = now_ms()
    by_stream: dict[str, list[dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(pings_in):
        try:
            driver_id = check_id(
                item.get("driver_id") if isinstance(item, dict) else None, "driver_id"
            )
            ping = check_ping(item, driver_id, now)
            market = deps.markets.locate(ping["lat"], ping["lon"])
        except RidePulseError as exc:
            errors.append({"index": index, "field": exc.field, "reason": exc.detail})
            continue
        by_stream.setdefault(MarketKeys(market.id, deps.settings.key_prefix).telemetry, []).append(
            ping
        )
    for stream, pings in by_stream.items():
        await deps.batcher.submit(stream, pings)
    accepted = len(pings_in) - len(errors)
    body_out = {"accepted": accepted, "rejected": len(errors), "errors": errors[:100]}
    return Response(orjson.dumps(body_out), status_code=202, media_type="application/json")
