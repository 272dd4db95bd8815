"""Telemetry in: one ping over HTTP, a batch for fleets, or a driver's WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ingest.batcher import Ping
from ingest.deps import Deps, body_bytes, get_deps, json_body, parse_json
from ingest.fast_batch import DecodedBatch, FleetPing, count, decode_batch
from ingest.lean_route import LeanRoute
from ingest.schemas import (
    DriverId,
    PingAccepted,
    PingIn,
    TelemetryAccepted,
    TelemetryBatchIn,
    body_schema,
)
from ingest.shedding import batch_slot, refuse_if_shedding
from ingest.validation import check_id, check_ping
from ridepulse.auth import Principal
from ridepulse.contracts.envelope import now_ms
from ridepulse.errors import Forbidden, InvalidInput, Overloaded, RidePulseError
from ridepulse.openapi_errors import error_responses

router = APIRouter(tags=["telemetry"])
ping_router = APIRouter(tags=["telemetry"], route_class=LeanRoute)  # the hottest route
ACCEPTED = Response(b'{"accepted":1}', status_code=202, media_type="application/json")
PING_BODY_LIMIT = 4096
YIELD_EVERY_ITEMS = 500  # per-item path: ~1-2 ms of validation between event-loop turns
# A ping is 8 JSON values (an object, up to 7 fields); 4x that leaves room for fields no reader
# looks at, and bounds what the per-item path's parse may build (see batch_items).
JSON_VALUES_PER_PING = 32


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
        raise over_rate(deps, driver_id)
    await deps.batcher.submit(deps.keys(market.id).telemetry, [ping], market.id)


def over_rate(deps: Deps, driver_id: str) -> Overloaded:
    """A ping past its driver's bucket (a 429 alone, a rejected item in a batch)."""
    return Overloaded(f"driver {driver_id} exceeds {deps.limiter.rate_per_s:g} pings/s")


@ping_router.post(
    "/v1/drivers/{driver_id}/location",
    status_code=202,
    response_model=PingAccepted,
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
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
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
    openapi_extra=body_schema(TelemetryBatchIn),
    summary="A batch of pings for many drivers (fleet gateways and simulators)",
)
async def post_telemetry(request: Request) -> Response:
    deps = get_deps(request)
    deps.authenticate(request.headers.get("authorization")).require("fleet", "ops")
    refuse_if_shedding(deps)
    raw = await body_bytes(request)
    async with batch_slot(deps):  # bounded telemetry work in flight: rides are served between
        return await _accept_batch(deps, raw)


async def _accept_batch(deps: Deps, raw: bytes) -> Response:
    now = now_ms()
    max_pings = deps.settings.max_batch_pings
    fast = decode_batch(raw, now, deps.markets)
    if fast is not None:  # every item valid: decoded and checked without a dict per ping
        accepted = count(fast)
        if accepted > max_pings:
            raise too_many_pings(max_pings)
        drivers = [ping.driver_id for ping in fast.in_order]
        if not deps.limiter.allow_all(drivers):  # a driver past its rate: named ping by ping
            return await _accept_within_rates(deps, fast)
        for market_id, group in fast.items():
            await deps.batcher.submit(deps.keys(market_id).telemetry, group, market_id)
        return Response(
            b'{"accepted":%d,"rejected":0,"errors":[]}' % accepted,
            status_code=202,
            media_type="application/json",
        )
    return await _post_telemetry_per_item(deps, batch_items(raw, max_pings), now)


async def _accept_within_rates(deps: Deps, batch: DecodedBatch) -> Response:
    """A valid batch with a driver past its bucket: each ping takes its driver's token on its
    own, in the batch's order, and those past it are rejected by index (the single ping's
    429), on the structs already decoded: no second parse, no dict per ping."""
    market_of = {id(ping): market_id for market_id, group in batch.items() for ping in group}
    by_market: dict[str, list[FleetPing]] = {}
    errors: list[dict[str, Any]] = []
    for index, ping in enumerate(batch.in_order):
        if index and index % YIELD_EVERY_ITEMS == 0:
            await asyncio.sleep(0)  # bounded work per turn: ride requests are not held up
        if deps.limiter.allow(ping.driver_id):
            by_market.setdefault(market_of[id(ping)], []).append(ping)
        else:
            errors.append(
                {"index": index, "field": None, "reason": over_rate(deps, ping.driver_id).detail}
            )
    return await _submit_partly(deps, by_market, len(batch.in_order), errors)


def too_many_pings(max_pings: int) -> InvalidInput:
    return InvalidInput(f"at most {max_pings} pings per batch", field="pings")


def batch_items(raw: bytes, max_pings: int) -> list[Any]:
    """The batch's items as plain JSON values for the per-item path, or InvalidInput.

    Before the parse, a count in C of what could start a value (`,` `{` `[`; more inside
    strings, never fewer) bounds the objects it may build: parsed whole first, a 4 MiB body
    of `{}` was 1.4 M dicts (ingest's RSS 80 → 198 MB) before its items were counted, and one
    item holding such a list would be as many. A valid batch never gets here (a driver past
    its rate included: _accept_within_rates), so only a batch with a bad item pays for it."""
    values_at_most, bound = 0, max_pings * JSON_VALUES_PER_PING
    for starts_value in (b",", b"{", b"["):  # a few ms over 4 MiB
        values_at_most += raw.count(starts_value)
        if values_at_most > bound:
            raise InvalidInput(
                f"at most {max_pings} pings per batch, of at most {bound} JSON values in all",
                field="pings",
            )
    body = parse_json(raw)
    pings_in = body.get("pings") if isinstance(body, dict) else None
    if not isinstance(pings_in, list):
        raise InvalidInput('body must be {"pings": [...]}', field="pings")
    if len(pings_in) > max_pings:
        raise too_many_pings(max_pings)
    return pings_in


async def _post_telemetry_per_item(deps: Deps, pings_in: list[Any], now: int) -> Response:
    """A batch with a bad item: each item checked alone, so the good ones are accepted and each
    bad one is named with its index, field and reason. A valid ping takes a token from its
    driver's bucket, as a single ping does; past the bucket it is rejected (the single ping's
    429)."""
    by_market: dict[str, list[Ping]] = {}
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(pings_in):
        if index and index % YIELD_EVERY_ITEMS == 0:
            await asyncio.sleep(0)  # bounded work per turn: ride requests are not held up
        try:
            driver_id = check_id(
                item.get("driver_id") if isinstance(item, dict) else None, "driver_id"
            )
            ping = check_ping(item, driver_id, now)
            market = deps.markets.locate(ping["lat"], ping["lon"])
            if not deps.limiter.allow(driver_id):
                raise over_rate(deps, driver_id)
        except RidePulseError as exc:
            errors.append({"index": index, "field": exc.field, "reason": exc.detail})
            continue
        by_market.setdefault(market.id, []).append(ping)
    return await _submit_partly(deps, by_market, len(pings_in), errors)


async def _submit_partly(
    deps: Deps,
    by_market: Mapping[str, Sequence[Ping]],
    items: int,
    errors: list[dict[str, Any]],
) -> Response:
    """A batch's accepted pings appended per market, and its 202 naming the rejected ones (the
    first 100)."""
    for market_id, pings in by_market.items():
        await deps.batcher.submit(deps.keys(market_id).telemetry, pings, market_id)
    body_out = {"accepted": items - len(errors), "rejected": len(errors), "errors": errors[:100]}
    return Response(orjson.dumps(body_out), status_code=202, media_type="application/json")
