"""A driver's WebSocket leaves nothing behind once closed: ingest under a real uvicorn in this
process, the session's embedded Valkey, real WebSocket clients opening and closing at once (a
phone in a tunnel). Each socket's send loop and expiry timer end with it, the notifier holds no
queue of it and the per-token cap counts it no more."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect

from ingest import routes_driver_ws
from ingest.app import create_app
from ingest.routes_driver_ws import MAX_FRAME_BYTES
from ridepulse import ws_expiry
from ridepulse.auth import mint_token
from ridepulse.http_server import uvicorn_config
from ridepulse.settings import Settings
from tests.support.ingest import start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SOCKETS = 60
STEPS = 30  # loop iterations into the send loop; its resume's Redis calls lie within the first few
ROUTE_LOOPS = {routes_driver_ws._send_loop.__code__, ws_expiry.close_at_expiry.__code__}


@contextlib.asynccontextmanager
async def _serve(settings: Settings) -> AsyncIterator[tuple[FastAPI, int]]:
    """Ingest (app, lifespan and uvicorn, as `ridepulse run ingest` serves it) on its own port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    app = create_app(settings)
    config = uvicorn_config(
        app,
        settings,
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=2,
        ws_max_size=MAX_FRAME_BYTES,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))

    async def started() -> bool:
        return server.started

    await wait_until(started, timeout_s=10, what="ingest to listen")
    try:
        yield app, port
    finally:
        server.should_exit = True
        await task
        listener.close()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A task stuck in a reference cycle is still listed by asyncio.all_tasks() (a WeakSet)
    until the collector frees it: with the collector off, the test sees every one left."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _route_tasks_pending() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "cr_code", None) in ROUTE_LOOPS
    ]


async def test_sockets_closed_at_once_leave_no_task_queue_or_cap_slot_behind(
    settings: Settings,
) -> None:
    """Sockets closed as soon as open, the way a phone in a tunnel does. One closed as its send
    loop's resume wrote to Redis kept that loop waiting for ever (the next test), holding the
    socket until the collector found it and logged "Task was destroyed but it is pending!"."""
    token = mint_token(settings.secret or "", "driver", "d-churn")
    with _no_cycle_collection():
        async with _serve(settings) as (app, port):
            url = f"ws://127.0.0.1:{port}/v1/drivers/d-churn/ws?token={token}"
            for _ in range(SOCKETS):
                async with connect(url, open_timeout=5):
                    pass  # closed as soon as open

            async def all_ended() -> bool:
                return not _route_tasks_pending()

            with contextlib.suppress(AssertionError):  # the assertion below names what is left
                await wait_until(all_ended, timeout_s=5, what="the sockets' tasks to end")
            left = _route_tasks_pending()
            assert not left, f"{len(left)} of {SOCKETS} sockets' tasks left: {left[:2]}"
            assert dict(app.state.deps.notifier.queues) == {}
            assert len(app.state.driver_ws_cap) == 0


class _SocketNotWritten:
    """The driver holds no ride here, so the send loop's resume sends nothing."""

    async def send_text(self, text: str) -> None:
        raise AssertionError(f"nothing to resume, yet {text!r} was sent")


async def test_a_send_loop_cancelled_at_any_step_of_its_resume_ends(settings: Settings) -> None:
    """The socket's `finally` cancels its send loop, which may be anywhere in its resume's Redis
    reads then. Cancelled as a read's write completed, redis-py's asyncio.wait_for returned
    (Python 3.11, CPython gh-86296) and the loop went on to wait for ever on a queue nothing
    fills, holding its socket (~70 KB) until a collection: 216 of 300 sockets closed at once
    left one."""
    websocket = cast(WebSocket, _SocketNotWritten())
    async with start(settings) as ingest:
        notifier = ingest.deps.notifier
        for step in range(STEPS):
            # a connection ready in the pool, as a busy ingest has: a cancelled read drops its
            # connection, and connecting anew would shift the steps by a varying number
            await ingest.deps.redis.ping()
            queue = notifier.subscribe("d-step")
            loop = asyncio.create_task(
                routes_driver_ws._send_loop(websocket, queue, ingest.deps, "d-step")
            )
            for _ in range(step):
                await asyncio.sleep(0)
            loop.cancel()
            await asyncio.wait({loop}, timeout=2)
            notifier.unsubscribe("d-step", queue)
            assert loop.done(), f"send loop cancelled {step} steps in still runs: {loop!r}"
