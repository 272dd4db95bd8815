"""A Redis connection torn down under a request (a cluster node failing) is answered 503 and
done with: Starlette's catch-all handler answered, then raised the exception again for the
server, which printed a plain-text traceback into the JSON log (39 in one failover)."""

from __future__ import annotations

import httpx
import orjson
from fastapi import FastAPI
from redis.asyncio.connection import Connection

from ridepulse.http_errors import install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/torn")
    async def torn() -> None:
        # what redis-py raises when a node's connection is gone: its writer is None
        await Connection(host="127.0.0.1", port=1)._send_packed_command([b"PING"])

    @app.get("/bug")
    async def bug() -> None:
        raise AttributeError("ours")

    return app


async def _get(path: str) -> httpx.Response:
    # raise_app_exceptions: an exception the app raises after answering fails the call
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


async def test_a_torn_redis_connection_is_a_503_and_not_raised_again() -> None:
    answer = await _get("/torn")
    assert answer.status_code == 503
    assert orjson.loads(answer.content)["error"] == "unavailable"
    assert int(answer.headers["Retry-After"]) >= 1


async def test_the_same_class_from_our_own_code_is_a_500_not_a_503() -> None:
    answer = await _get("/bug")
    assert answer.status_code == 500
    assert orjson.loads(answer.content)["error"] == "internal"
