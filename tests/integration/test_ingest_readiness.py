"""Ingest's /readyz in process (the app over httpx's ASGI transport, its lifespan run as uvicorn
would) against the real embedded server: ready while the driver notifier reads, 503 with the
reason once its loop has ended, since offers would no longer reach the drivers' WebSockets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from ingest.app import create_app
from ingest.deps import Deps
from ingest.routes_health import REPORTED_GROUPS
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class ReaderBug(TypeError):
    """What the notifier's loop does not catch: not a Redis error, not transient."""


class BrokenReader:
    """The notifier's Redis client, whose XREAD fails as a client bug would (a reply it cannot
    parse): every other command goes to the real server."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.redis, name)

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        raise ReaderBug("cannot parse the XREAD reply")


async def declare_groups(redis: aioredis.Redis, deps: Deps) -> None:
    """What matching, eta and pricing declare at their start: /readyz waits for them."""
    for market in deps.markets.markets:
        for group in REPORTED_GROUPS:
            await redis.xgroup_create(deps.keys(market.id).rides, group, id="0", mkstream=True)


async def test_readyz_answers_503_with_the_reason_once_the_driver_notifier_loop_has_died(
    settings: Settings, redis: aioredis.Redis
) -> None:
    with capture_logs() as logs:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
                deps: Deps = app.state.deps
                await declare_groups(redis, deps)
                ready = await http.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["status"] == "ready" and deps.notifier.failure is None

                # the loop looks the client up on every read: its next XREAD meets the bug
                broken = BrokenReader(deps.notifier.redis)
                deps.notifier.redis = broken

                async def not_ready() -> httpx.Response | None:
                    response = await http.get("/readyz")
                    return response if response.status_code != 200 else None

                failed = await wait_until(
                    not_ready, timeout_s=15, what="/readyz to see the notifier's loop end"
                )
                assert broken.reads == 1, "the loop must end at the bug, not retry it"
                assert failed.status_code == 503, failed.text
                body = failed.json()
                assert body["status"] == "waiting" and body["missing"] == [], body
                assert body["notifier"] == "ReaderBug: cannot parse the XREAD reply", body
                assert deps.notifier.failure == body["notifier"]
    stopped = [e for e in logs if e["event"] == "notifier.stopped"]
    assert len(stopped) == 1 and stopped[0]["log_level"] == "error", stopped
    assert stopped[0]["error"] == "ReaderBug: cannot parse the XREAD reply", stopped


async def _readyz(settings: Settings, groups: tuple[str, ...]) -> httpx.Response:
    """/readyz of a fresh ingest after `groups` were declared on every market's ride stream."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        deps: Deps = app.state.deps
        for market in deps.markets.markets:
            for group in groups:
                await deps.redis.xgroup_create(
                    deps.keys(market.id).rides, group, id="0", mkstream=True
                )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            return await http.get("/readyz")


async def test_readyz_is_503_without_the_matching_group_even_when_eta_and_pricing_have_theirs(
    settings: Settings,
) -> None:
    response = await _readyz(settings, ("eta", "pricing"))
    assert response.status_code == 503, response.text
    body = response.json()
    assert (body["status"], body["missing"]) == ("waiting", ["matching@sf"]), body
    assert response.headers.get("retry-after") == "1", "README: every 503 carries Retry-After"


async def test_readyz_is_503_with_retry_after_while_redis_is_out_of_reach(
    settings: Settings,
) -> None:
    nothing_there = f"redis://127.0.0.1:{free_port()}"  # a port no server listens on
    app = create_app(settings.model_copy(update={"redis_url": nothing_there}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable", response.text
    assert response.headers.get("retry-after") == "1", "README: every 503 carries Retry-After"


async def test_readyz_is_200_when_only_the_eta_and_pricing_groups_are_missing(
    settings: Settings,
) -> None:
    """Eta and pricing enrich rides: reported as missing, not required (architecture.md)."""
    response = await _readyz(settings, ("matching",))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["missing"]) == ("ready", ["eta@sf", "pricing@sf"]), body


@pytest.mark.parametrize("durable", [True, False])
async def test_readyz_shows_whether_a_ride_202_waits_for_the_fsync(
    settings: Settings, durable: bool
) -> None:
    """README: RIDEPULSE_DURABLE_WRITES=false shows as `durable_writes: false` in /readyz."""
    response = await _readyz(
        settings.model_copy(update={"durable_writes": durable}), REPORTED_GROUPS
    )
    assert response.status_code == 200, response.text
    assert response.json()["durable_writes"] is durable, response.text
