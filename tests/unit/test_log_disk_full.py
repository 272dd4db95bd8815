"""A log line that cannot be written never reaches the code that logged it. With the data dir
(logs included) on a full disk, every log call raised ENOSPC: the API's error handlers, which log
before they answer, gave way to Starlette's plain-text 500, and a background loop that logs a
failed pass ended with its first one (ingest's heartbeat, for good)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from ridepulse import logs
from ridepulse.http_errors import install_error_handlers
from ridepulse.logs import configure_logging, get_logger
from ridepulse.periodic import every
from tests.support.waiting import wait_until


class FullDisk(io.StringIO):
    """A log sink on a full disk until `freed`: every write fails as a write to it does."""

    full = True

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


# each test configures logging its own way; the next one starts from what was
pytestmark = pytest.mark.usefixtures("restore_structlog")


@pytest.fixture
def dev_full() -> Iterator[Any]:
    """The real thing: every flush to /dev/full fails with ENOSPC."""
    sink = open("/dev/full", "w")  # noqa: SIM115 - closed below, after ENOSPC
    yield sink
    with contextlib.suppress(OSError):  # closing flushes what is left: ENOSPC once more
        sink.close()


def log_to(monkeypatch: pytest.MonkeyPatch, sink: Any) -> None:
    """Every service's logging (ridepulse.logs) with stderr on `sink`, counting lost lines from
    0 (the count is the process's: another test that logged to a closed stream left its own)."""
    monkeypatch.setattr(logs._Lost, "count", 0)
    monkeypatch.setattr("sys.stderr", sink)
    configure_logging("ingest", "info", "json")


def test_a_log_line_that_cannot_be_written_is_counted_and_noted_once_writing_works_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = FullDisk()
    log_to(monkeypatch, sink)
    written_off = logs.LOG_WRITE_ERRORS
    before = written_off._value.get()
    get_logger().error("api.redis_error", path="/x")  # raised OSError ENOSPC into the caller
    get_logger().warning("heartbeat.failed")
    assert written_off._value.get() - before == 2
    sink.full = False
    get_logger().info("ride.matched", ride_id="r1")
    get_logger().info("ride.started", ride_id="r1")
    events = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["ride.matched", "log.lines_lost", "ride.started"]
    assert events[1]["lost"] == 2 and events[1]["level"] == "warning", events[1]


async def test_an_api_error_is_still_its_json_503_with_retry_after_when_the_log_disk_is_full(
    dev_full: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_to(monkeypatch, dev_full)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    async def down() -> None:
        raise RedisConnectionError("Connection refused")

    # the old handler's own error surfaced as Starlette's "Internal Server Error", text/plain
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/down")
    assert answer.status_code == 503, f"{answer.status_code} {answer.text!r}"
    assert answer.headers["content-type"] == "application/json"
    assert orjson.loads(answer.content)["error"] == "unavailable"
    assert answer.headers["Retry-After"] == "1", "README: every 503 carries Retry-After"


async def test_a_background_loop_outlives_a_failed_pass_whose_log_line_cannot_be_written(
    dev_full: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_to(monkeypatch, dev_full)
    stop = asyncio.Event()
    passes = 0

    async def one_pass() -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RedisConnectionError("blip")  # logged as heartbeat.failed: ENOSPC

    loop = asyncio.create_task(
        every(stop, 0.01, one_pass, log=get_logger(), failed="heartbeat.failed")
    )

    async def passed_again() -> int | None:
        if loop.done():  # ended: the old loop, its log call raising in the except block
            loop.result()
        return passes if passes >= 3 else None

    try:
        await wait_until(passed_again, timeout_s=10, what="passes after the failed one")
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
