"""WS /ws: a snapshot (or the missed deltas) then deltas, from the client's bounded queue.

Auth (when on): the session cookie the page got from its link, or a `dashboard`-audience token
in ?token= / Authorization. The socket closes with 4401 when that token expires. One grant (a
link and every session opened from it) holds at most `dashboard_ws_per_token` sockets of this
process; one more is refused with 429 and Retry-After (ridepulse/ws_cap.py); with auth off there
is no token, so no cap.
Query: market (one this dashboard serves; the default market when absent), and last_seq and
epoch (from the snapshot) to resume."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import WebSocket

from dashboard.access import SESSION_COOKIE, origin_allowed, require_viewer, token_from
from dashboard.feed import Feed, pick_feed
from dashboard.hub import Client
from dashboard.metrics import FEED_REFUSED
from ridepulse.auth import Principal
from ridepulse.errors import RidePulseError
from ridepulse.ws_cap import ConnectionCap, refuse_over_cap
from ridepulse.ws_close import close_reason
from ridepulse.ws_expiry import close_at_expiry

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def feed_socket(websocket: WebSocket) -> None:
    app = websocket.app
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host")):
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, reason="origin not allowed")
        return
    try:
        token = token_from(
            websocket.query_params.get("token"),
            websocket.headers.get("authorization"),
            websocket.cookies.get(SESSION_COOKIE),
        )
        viewer = require_viewer(app.state.settings, app.state.secret, token)
    except RidePulseError as exc:
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, reason=exc.code)
        return
    params = websocket.query_params
    try:
        feed: Feed = pick_feed(app.state, params.get("market"))
    except RidePulseError as exc:
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, reason=close_reason(exc.detail))
        return
    cap: ConnectionCap = app.state.feed_cap
    counted = viewer.grant if viewer is not None else None
    if counted is not None and not cap.acquire(counted):
        FEED_REFUSED.inc()
        await refuse_over_cap(websocket, cap.limit)
        return
    try:
        await websocket.accept()
        await _serve(websocket, feed, viewer)
    finally:  # every way out, a dropped connection too, gives the slot back
        if counted is not None:
            cap.release(counted)


async def _serve(websocket: WebSocket, feed: Feed, viewer: Principal | None) -> None:
    params = websocket.query_params
    client = feed.hub.connect(_int(params.get("last_seq")), params.get("epoch"))
    tasks = [
        asyncio.create_task(_send(websocket, client)),
        asyncio.create_task(_receive(websocket)),
        asyncio.create_task(client.gone.wait()),
    ]
    if viewer is not None:
        tasks.append(asyncio.create_task(close_at_expiry(websocket, viewer.expires_at)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.hub.disconnect(client)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if client.gone.is_set():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(TRY_AGAIN_LATER, reason="too slow"), 1.0)


async def _send(websocket: WebSocket, client: Client) -> None:
    while True:
        frame = await client.queue.get()
        for text in frame:
            await websocket.send_text(text)
        client.took_frame()


async def _receive(websocket: WebSocket) -> None:
    """Messages from the page are ignored; this returns when the socket closes."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
