"""Ingest's background loops (heartbeat, driver notifier, shedding check) never end unseen, in
process against the real embedded server. With its log disk full, ingest's heartbeat loop ended
at its first failed pass (the warning it logs raised ENOSPC) and stayed dead while /readyz said
200 and `ridepulse status` said ingest had no live heartbeat. Now a blip that ends a loop starts
it again after a backoff, and a loop ended by anything else is named by /readyz (503)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from ingest.app import create_app
from ingest.deps import Deps
from ingest.routes_health import REPORTED_GROUPS
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.bus.worker import consumer_name
from ridepulse.keys import GlobalKeys
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class HeartbeatBug(ValueError):
    """What a beat's own code might raise: not a Redis error, not transient."""


@pytest.fixture
def full_log_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ingest's logging as `ridepulse run ingest` sets it up, its stderr on /dev/full."""
    saved = structlog.get_config()
    sink = open("/dev/full", "w")  # noqa: SIM115 - closed below, after ENOSPC
    monkeypatch.setattr("sys.stderr", sink)
    configure_logging("ingest", "info", "json")
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
    with contextlib.suppress(OSError):  # closing flushes what is left: ENOSPC once more
        sink.close()


def failing_first(monkeypatch: pytest.MonkeyPatch, name: str, error: Exception) -> list[int]:
    """Heartbeat.<name> raises `error` on its first call, then does its work; the calls."""
    real = getattr(Heartbeat, name)
    calls: list[int] = []

    async def once_failing(self: Heartbeat, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return await real(self, *args)

    monkeypatch.setattr(Heartbeat, name, once_failing)
    return calls


async def _beats_after(settings: Settings, redis: aioredis.Redis) -> None:
    """Run ingest until its heartbeat key is there, its loop beating again."""
    key = GlobalKeys(settings.key_prefix).heartbeat("ingest", consumer_name(settings, "ingest"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):

        async def beating() -> bool:
            return bool(await redis.exists(key))

        await wait_until(beating, timeout_s=15, what="ingest's heartbeat key")


@pytest.mark.usefixtures("full_log_disk")
async def test_ingest_beats_on_after_a_failed_beat_while_its_log_disk_is_full(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = failing_first(monkeypatch, "beat", RedisConnectionError("Connection reset by peer"))
    await _beats_after(settings, redis)
    assert len(calls) >= 2, calls


async def test_ingest_heartbeat_loop_ended_by_a_redis_blip_is_started_again(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = failing_first(monkeypatch, "run", RedisConnectionError("Connection reset by peer"))
    with capture_logs() as logs:
        await _beats_after(settings, redis)
    assert len(calls) == 2, calls
    restarted = [e for e in logs if e["event"] == "service.background_restarted"]
    assert [e["task"] for e in restarted] == ["heartbeat"], logs


async def test_readyz_names_the_heartbeat_loop_once_a_bug_has_ended_it(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_first(monkeypatch, "beat", HeartbeatBug("rss is not a number"))
    with capture_logs() as logs:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            deps: Deps = app.state.deps
            for market in deps.markets.markets:  # what /readyz waits for besides
                for group in REPORTED_GROUPS:
                    await redis.xgroup_create(
                        deps.keys(market.id).rides, group, id="0", mkstream=True
                    )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:

                async def not_ready() -> httpx.Response | None:
                    response = await http.get("/readyz")
                    return response if response.status_code != 200 else None

                failed = await wait_until(
                    not_ready, timeout_s=15, what="/readyz to see the heartbeat loop end"
                )
    assert failed.status_code == 503, failed.text
    assert failed.headers.get("retry-after") == "1", "README: every 503 carries Retry-After"
    body = failed.json()
    assert body["status"] == "waiting" and body["missing"] == [], body
    assert body["stopped"] == {"heartbeat": "HeartbeatBug: rss is not a number"}, body
    stopped = [e for e in logs if e["event"] == "service.background_stopped"]
    assert [(e["task"], e["log_level"]) for e in stopped] == [("heartbeat", "error")], stopped
