"""WS /v1/drivers/{driver_id}/ws: pings in; offers, assignment changes and ETAs out."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect

from ingest.deps import Deps
from ingest.errors import error_response
from ingest.routes_telemetry import accept_ping
from ridepulse.errors import RidePulseError
from ridepulse.ws_cap import CAP_RETRY_AFTER_S, ConnectionCap
from ridepulse.ws_expiry import close_at_expiry

router = APIRouter(tags=["telemetry"])
POLICY_VIOLATION = 1008
MAX_MESSAGE_BYTES = 4096


def _connection_cap(app: FastAPI, deps: Deps) -> ConnectionCap:
    cap: ConnectionCap | None = getattr(app.state, "driver_ws_cap", None)
    if cap is None:
        cap = app.state.driver_ws_cap = ConnectionCap(deps.settings.driver_ws_per_token)
    return cap


async def _refuse_over_cap(websocket: WebSocket, limit: int) -> None:
    """429 with Retry-After on the handshake where the server can send one, else close 1008."""
    detail = f"at most {limit} open WebSocket(s) per token"
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = error_response(429, "rate_limited", detail, retry_after_s=CAP_RETRY_AFTER_S)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY_VIOLATION, detail)


def origin_allowed(websocket: WebSocket) -> bool:
    """Native apps send no Origin; a browser page may connect only from this same host."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc == host


@router.websocket("/v1/drivers/{driver_id}/ws")
async def driver_socket(websocket: WebSocket, driver_id: str) -> None:
    deps: Deps = websocket.app.state.deps
    if not origin_allowed(websocket):
        await websocket.close(POLICY_VIOLATION, "origin not allowed")
        return
    token = websocket.query_params.get("token")
    header = websocket.headers.get("authorization") or (f"Bearer {token}" if token else None)
    try:
        who = deps.authenticate(header)
        if (who.role == "driver" and who.subject != driver_id) or who.role not in ("driver", "ops"):
            raise RidePulseError("a driver may only connect as itself")
    except RidePulseError as exc:
        await websocket.close(POLICY_VIOLATION, exc.detail[:120])
        return
    cap = _connection_cap(websocket.app, deps)
    if not cap.acquire(header or ""):
        await _refuse_over_cap(websocket, cap.limit)
        return
    try:
        await websocket.accept()
        await _serve(websocket, deps, driver_id, who.expires_at)
    finally:
        cap.release(header or "")


async def _serve(websocket: WebSocket, deps: Deps, driver_id: str, expires_at: float) -> None:
    queue = deps.notifier.subscribe(driver_id)
    sender = asyncio.create_task(_send_loop(websocket, queue))
    expiry = asyncio.create_task(close_at_expiry(websocket, expires_at))
    try:
        while True:
            raw = await websocket.receive_text()
            if len(raw) > MAX_MESSAGE_BYTES:
                await websocket.send_bytes(_error("message too large"))
                continue
            try:
                await accept_ping(deps, driver_id, orjson.loads(raw))
            except orjson.JSONDecodeError:
                await websocket.send_text('{"type":"error","detail":"not JSON"}')
            except RidePulseError as exc:
                await websocket.send_bytes(_error(exc.detail, exc.field))
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closed by the expiry task
        pass
    finally:
        sender.cancel()
        expiry.cancel()
        deps.notifier.unsubscribe(driver_id, queue)


def _error(detail: str, field: str | None = None) -> bytes:
    return orjson.dumps({"type": "error", "detail": detail, "field": field})


async def _send_loop(websocket: WebSocket, queue: asyncio.Queue[bytes]) -> None:
    while True:
        message = await queue.get()
        await websocket.send_text(message.decode())
