"""HTTP routes: the page and its assets, the base map, the snapshot and ride APIs, health."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from dashboard.access import (
    BEARER,
    SESSION,
    TOKEN_QUERY,
    require_link,
    require_viewer,
    start_session,
    token_from,
)
from dashboard.basemap import basemap_for
from dashboard.feed import Feed, pick_feed
from ridepulse.errors import NotFound, RedisUnavailable, RidePulseError
from ridepulse.openapi_errors import error_responses
from ridepulse.rides.ids import market_of_ride

STATIC = Path(__file__).parent / "static"
SNAPSHOT_WAIT_S = 5.0

router = APIRouter()


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _feed(request: Request, market: str | None = None) -> Feed:
    return pick_feed(request.app.state, market)


def json_object(description: str | None = None) -> dict[str, Any]:
    """A response entry's `content`: a JSON object (these routes answer plain Responses)."""
    schema: dict[str, Any] = {"type": "object"}
    if description:
        schema["description"] = description
    return {"content": {"application/json": {"schema": schema}}}


# Everything the page loads comes from this server; the one exception is the opt-in online map.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https://tile.openstreetmap.org; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


# HEAD as well as GET on the page and the health check: `curl -I` and HEAD health probes got 405.
@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page(request: Request, token: str | None = Query(None)) -> Response:
    """The page needs no token to load. A link's `?token=` is swapped for the session cookie
    and dropped from the address bar (303 to `/`, the link's other parameters kept: its
    `?market=`); a bad or expired one sets no cookie and the page says how to get a fresh
    link."""
    if token is not None:
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        location = f"/?{urlencode(kept)}" if kept else "/"  # a path: never another site
        redirect = RedirectResponse(location, 303, headers={"Cache-Control": "no-store"})
        settings, secret = request.app.state.settings, request.app.state.secret
        try:
            link = require_link(settings, secret, token)
        except RidePulseError:
            return redirect
        if link is not None:
            start_session(redirect, secret, link, secure=request.url.scheme == "https")
        return redirect
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": PAGE_CSP,
        "Referrer-Policy": "no-referrer",
    }
    return FileResponse(STATIC / "index.html", headers=headers)


@router.get("/basemap.geojson", include_in_schema=False)
async def basemap(request: Request, market: str | None = Query(None)) -> Response:
    feed = _feed(request, market)
    return Response(basemap_for(feed.market), media_type="application/geo+json")


@router.api_route(
    "/healthz",
    methods=["GET", "HEAD"],
    response_class=Response,
    responses={200: {"description": "The process is alive", **json_object('{"status": "ok"}')}},
    summary="The process is alive",
)
async def healthz() -> Response:
    return json_response({"status": "ok"})


async def viewer(
    request: Request,
    token: Annotated[str | None, Security(TOKEN_QUERY)],
    session: Annotated[str | None, Security(SESSION)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> None:
    """Every way of presenting a token, declared once; the Authorization header is read as
    sent, not as HTTPBearer parsed it, so a malformed one is refused saying so."""
    require_viewer(
        request.app.state.settings,
        request.app.state.secret,
        token_from(token, request.headers.get("authorization"), session),
    )


Viewer = Annotated[None, Depends(viewer)]


@router.get(
    "/api/snapshot",
    response_class=Response,
    responses={
        200: {
            "description": "The market's live state, as the feed's first message",
            **json_object(),
        },
        **error_responses(
            401, 404, 503, descriptions={404: "This dashboard serves no such market"}
        ),
    },
    summary="A market's live snapshot",
)
async def snapshot(request: Request, _: Viewer, market: str | None = Query(None)) -> Response:
    try:
        feed = _feed(request, market)
        text = await asyncio.wait_for(feed.hub.snapshot_text(), SNAPSHOT_WAIT_S)
    except TimeoutError:
        raise RedisUnavailable("the feed is not running") from None
    return Response(text, media_type="application/json")


@router.get(
    "/api/rides/{ride_id}",
    response_class=Response,
    responses={
        200: {"description": "The ride and its timeline", **json_object()},
        **error_responses(401, 404, 503),
    },
    summary="A ride and its timeline",
)
async def ride(request: Request, ride_id: str, _: Viewer) -> Response:
    feeds: dict[str, Feed] = request.app.state.feeds
    # a ride id carries its market (ridepulse/rides/ids.py): read it from that market's keys
    found = await feeds.get(market_of_ride(ride_id) or "", _feed(request)).ride(ride_id)
    if found is None:
        raise NotFound(f"no ride {ride_id!r}", field="ride_id")
    return json_response(found)
