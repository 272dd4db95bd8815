"""Every error either HTTP service (ingest, dashboard) answers leaves as JSON
{"error", "detail", "field"?} with its status, and the headers its status requires (Allow on a
405, WWW-Authenticate on a 401, Retry-After on a 429 or 503); never a traceback. One module, so
the two services cannot drift apart: the dashboard had none of these handlers and answered a
Redis outage with a bare `500 text/plain`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ridepulse.bus.faults import TORN_CONNECTION_CLASSES, is_transient
from ridepulse.errors import RidePulseError, http_error_code
from ridepulse.logs import get_logger
from ridepulse.write_refusals import REDIS_WRITES_REFUSED, refusal_reason

# RFC 9110 §11.6.1: a 401 names the scheme that would do. Every token is a bearer one
# (RFC 6750): the header, or the `?token=` a WebSocket or a dashboard link carries.
CHALLENGE = {"WWW-Authenticate": "Bearer"}
UNAVAILABLE = "storage is unavailable; retry shortly"


def error_body(code: str, detail: str, field: str | None = None, **extra: Any) -> bytes:
    """The error shape as bytes: `field` only when one input is at fault."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field:
        body["field"] = field
    body.update(extra)
    return orjson.dumps(body)


def error_response(
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    *,
    retry_after_s: int | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    out = dict(headers or {})
    if retry_after_s is None and status in (429, 503):
        retry_after_s = 1  # a client told to come back must be told when
    if retry_after_s is not None:
        out["Retry-After"] = str(retry_after_s)
    if status == 401:
        out.setdefault("WWW-Authenticate", CHALLENGE["WWW-Authenticate"])
    if status == 415:  # RFC 7694: the codings a body may come in; bodies are read as sent
        out.setdefault("Accept-Encoding", "identity")
    return Response(
        error_body(code, detail, field, **extra),
        status_code=status,
        media_type="application/json",
        headers=out or None,
    )


def install_error_handlers(app: FastAPI) -> None:
    log = get_logger()

    @app.exception_handler(RidePulseError)
    async def platform_error(request: Request, exc: RidePulseError) -> Response:
        retry_after_s: int | None = getattr(exc, "retry_after_s", None)
        return error_response(
            exc.status, exc.code, exc.detail, exc.field, retry_after_s=retry_after_s
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = first.get("loc", ())
        loc = [str(p) for p in where if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        if field and where[0] == "header":  # named as the API's other errors name it:
            field = field.replace("-", "_")  # Idempotency-Key → idempotency_key
        return error_response(422, "invalid_input", str(first.get("msg")), field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """No such route, or a method the route lacks: the router's headers (a 405's Allow)
        go out with the answer."""
        code = http_error_code(exc.status_code)
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        """The client hung up before its body arrived: no one reads this answer, and it is
        no fault of ours (a handler here, not the catch-all, keeps the traceback out)."""
        log.debug("api.client_disconnected", path=request.url.path)
        return error_response(400, "client_disconnected", "the client closed the connection")

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> Response:
        log.error("api.redis_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        if reason := refusal_reason(exc):  # OOM, MISCONF, NOREPLICAS: counted by cause
            REDIS_WRITES_REFUSED.labels(reason).inc()
        return error_response(503, "unavailable", UNAVAILABLE)

    async def unexpected(request: Request, exc: Exception) -> Response:
        if is_transient(exc):  # the client's connection torn down under it (a node failing)
            log.error(
                "api.redis_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}"
            )
            return error_response(503, "unavailable", UNAVAILABLE)
        log.error(  # the traceback inside the JSON line: a bug of ours, to be found
            "api.unexpected_error",
            path=request.url.path,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
        return error_response(500, "internal", "internal error; it has been logged")

    # Starlette answers with the catch-all handler and then raises the exception again, for the
    # server to log: uvicorn's plain-text "Exception in ASGI application" traceback in a JSON
    # log, 39 of them in one cluster failover. The classes redis-py raises when a node's
    # connection is torn down under it get handlers of their own, which answer and are done.
    for torn in TORN_CONNECTION_CLASSES:
        app.add_exception_handler(torn, unexpected)
    app.add_exception_handler(Exception, unexpected)
