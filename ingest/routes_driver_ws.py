"""WS /v1/drivers/{driver_id}/ws: pings in; offers, assignment changes and ETAs out."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from redis.exceptions import RedisError

from ingest.deps import Deps
from ingest.driver_resume import current_frame, held_ride, superseded
from ingest.routes_telemetry import accept_ping
from ingest.validation import check_id
from ridepulse.bus.faults import is_transient
from ridepulse.errors import Forbidden, InvalidInput, RidePulseError
from ridepulse.http_errors import UNAVAILABLE, error_response
from ridepulse.logs import get_logger
from ridepulse.write_refusals import REDIS_WRITES_REFUSED, refusal_reason
from ridepulse.ws_cap import CAP_RETRY_AFTER_S, ConnectionCap
from ridepulse.ws_close import close_reason
from ridepulse.ws_expiry import close_at_expiry

router = APIRouter(tags=["telemetry"])
POLICY_VIOLATION = 1008
MAX_MESSAGE_BYTES = 4096  # a ping is ~100 bytes; over this, the error frame `payload_too_large`
# uvicorn's ws_max_size for ingest (ingest/service.py): a frame past it closes the socket with
# 1009 as soon as its header announces the length, before its bytes are read. uvicorn's default,
# 16 MiB, was read whole before the check above: 4 sockets sending 16 MiB frames took ingest
# from 81 to 182 MB. 4x the message limit, so that a message a little over it is still
# answered with the error frame and the socket stays open.
MAX_FRAME_BYTES = 4 * MAX_MESSAGE_BYTES


def _connection_cap(app: FastAPI, deps: Deps) -> ConnectionCap:
    cap: ConnectionCap | None = getattr(app.state, "driver_ws_cap", None)
    if cap is None:
        cap = app.state.driver_ws_cap = ConnectionCap(deps.settings.driver_ws_per_token)
    return cap


async def _refuse(websocket: WebSocket, response: Response, detail: str) -> None:
    """The upgrade answered with `response` (the API's JSON error) where the server can send
    one, else closed with 1008 and `detail`."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY_VIOLATION, close_reason(detail))


async def _refuse_over_cap(websocket: WebSocket, limit: int) -> None:
    detail = f"at most {limit} open WebSocket(s) per token"
    response = error_response(429, "rate_limited", detail, retry_after_s=CAP_RETRY_AFTER_S)
    await _refuse(websocket, response, detail)


async def _refuse_upgrade(websocket: WebSocket, exc: RidePulseError) -> None:
    """docs/security.md: any refusal of who may connect is a 403, its body saying why (an
    expired token, another driver's); a malformed driver id is the 422 the HTTP routes give."""
    status, code = (exc.status, exc.code) if isinstance(exc, InvalidInput) else (403, "forbidden")
    await _refuse(websocket, error_response(status, code, exc.detail, exc.field), exc.detail)


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
    query_token = websocket.query_params.get("token")
    header = websocket.headers.get("authorization") or (
        f"Bearer {query_token}" if query_token else None
    )
    try:
        if not origin_allowed(websocket):
            raise Forbidden("origin not allowed")
        check_id(driver_id, "driver_id")
        who = deps.authenticate(header)
        if (who.role == "driver" and who.subject != driver_id) or who.role not in ("driver", "ops"):
            raise Forbidden("a driver may only connect as itself")
    except RidePulseError as exc:
        await _refuse_upgrade(websocket, exc)
        return
    # the cap counts the verified token's grant: however the header spelled "Bearer" (or the
    # query gave it), and however base64 spelled the signature
    cap = _connection_cap(websocket.app, deps)
    if not cap.acquire(who.grant):
        await _refuse_over_cap(websocket, cap.limit)
        return
    try:
        await websocket.accept()
        await _serve(websocket, deps, driver_id, who.expires_at)
    finally:
        cap.release(who.grant)


async def _serve(websocket: WebSocket, deps: Deps, driver_id: str, expires_at: float) -> None:
    queue = deps.notifier.subscribe(driver_id)
    sender = asyncio.create_task(_send_loop(websocket, queue, deps, driver_id))
    expiry = asyncio.create_task(close_at_expiry(websocket, expires_at))
    try:
        while True:
            raw = await _next_message(websocket)
            if len(raw) > MAX_MESSAGE_BYTES:
                await websocket.send_text(_error("payload_too_large", "message too large"))
                continue
            try:
                await accept_ping(deps, driver_id, orjson.loads(raw))
            except orjson.JSONDecodeError:  # bytes that are not UTF-8 included
                await websocket.send_text(_error("invalid_input", "not JSON"))
            except RidePulseError as exc:
                # as HTTP's Retry-After: given for 429 and 503, 1 s unless the error says
                retry_after_s: int | None = getattr(exc, "retry_after_s", None)
                if retry_after_s is None and exc.status in (429, 503):
                    retry_after_s = 1
                await websocket.send_text(_error(exc.code, exc.detail, exc.field, retry_after_s))
            except Exception as exc:
                # the server away, refusing the write, or the connection torn under it: HTTP's
                # 503, as a frame (the socket ended with no word, and the app did not pause)
                if not (isinstance(exc, RedisError) or is_transient(exc)):
                    raise
                # get_logger() here, not bound at import: a logger bound before the service
                # configured logging wrote console lines into its JSON log
                get_logger().warning(
                    "driver_ws.ping_not_stored", error=f"{type(exc).__name__}: {exc}"
                )
                if reason := refusal_reason(exc):  # OOM, MISCONF, NOREPLICAS: as HTTP counts
                    REDIS_WRITES_REFUSED.labels(reason).inc()
                await websocket.send_text(_error("unavailable", UNAVAILABLE, retry_after_s=1))
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closed by the expiry task
        pass
    finally:
        sender.cancel()
        expiry.cancel()
        deps.notifier.unsubscribe(driver_id, queue)


async def _next_message(websocket: WebSocket) -> bytes:
    """The next message's bytes, a text frame's or a binary one's (an app may send its JSON in
    either; receive_text() failed on binary with a KeyError that dropped the socket)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    return text.encode() if text is not None else message.get("bytes") or b""


def _error(
    code: str, detail: str, field: str | None = None, retry_after_s: int | None = None
) -> str:
    """An error reply, as text like every other message of this socket, with the HTTP API's
    `error` code; `field` only when one field is at fault, `retry_after_s` (HTTP's Retry-After)
    when the ping was shed or over its rate: the app pauses its pings that long."""
    body: dict[str, object] = {"type": "error", "error": code, "detail": detail}
    if field:
        body["field"] = field
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
    return orjson.dumps(body).decode()


async def _send_loop(
    websocket: WebSocket, queue: asyncio.Queue[bytes], deps: Deps, driver_id: str
) -> None:
    resumed = await _resume(queue, deps, driver_id)
    if _cancel_lost():
        return
    for message in resumed:
        await websocket.send_text(message.decode())
    while True:
        message = await queue.get()
        await websocket.send_text(message.decode())


def _cancel_lost() -> bool:
    """This task was cancelled (its socket closed) while a Redis call was ending, and the call
    returned as if it had not been: Python 3.11's asyncio.wait_for, which redis-py wraps every
    command's write in, drops a cancel that arrives as the awaited step completes (CPython
    gh-86296). Left to wait on its queue, which nothing fills once unsubscribed, the task kept
    its socket and buffers (~17 KB) until the collector found the cycle, then logged "Task was
    destroyed but it is pending!": 216 of 300 sockets closed at once left one."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _resume(queue: asyncio.Queue[bytes], deps: Deps, driver_id: str) -> list[bytes]:
    """The offer or ride the driver holds, read after subscribing (so no event falls between
    the read and the fan-out), ahead of what the notifier queued meanwhile; left out when a
    queued event of that ride already tells it."""
    try:
        ride = await held_ride(deps, driver_id)
    except Exception as exc:
        if not (isinstance(exc, RedisError) or is_transient(exc)):
            raise
        get_logger().warning("driver_ws.resume_not_read", error=f"{type(exc).__name__}: {exc}")
        ride = None
    queued: list[bytes] = []
    while not queue.empty():
        queued.append(queue.get_nowait())
    if ride is None or (frame := current_frame(ride, driver_id)) is None:
        return queued
    return queued if superseded(ride.ride_id, queued) else [frame, *queued]
