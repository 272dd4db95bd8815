"""The dashboard feed end to end without a browser: a real uvicorn on loopback, the session's
embedded Valkey, real WebSocket clients. Events written to Redis must reach clients as deltas;
a client that never reads must not delay one that does; the feed needs an ops token and the
page's own origin."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from dashboard.access import SESSION_COOKIE
from dashboard.app import create_app
from dashboard.config import FeedConfig
from dashboard.feed import Feed
from dashboard.protocol import apply_delta, decode
from dashboard.service import uvicorn_config
from ridepulse.auth import DASHBOARD_LINK_TTL_S, mint_dashboard_link, mint_token, verify_token
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings
from ridepulse.ws_expiry import TOKEN_EXPIRED
from tests.support.dashboard_city import RideWriter, put_drivers, put_heartbeat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

Message = dict[str, Any]


@dataclass
class Dashboard:
    port: int
    token: str
    settings: Settings
    app: FastAPI  # its state holds the feed and the per-token socket cap

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, token: str | None = "", **params: Any) -> str:
        query = {"token": self.token if token == "" else token, **params}
        pairs = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
        return f"ws://127.0.0.1:{self.port}/ws?{pairs}"


SEND_BUFFER_BYTES = 32_768
REFUSED_METRIC = "rp_dashboard_feed_refused_total"


@pytest.fixture
async def dashboard(settings: Settings) -> AsyncIterator[Dashboard]:
    async with _serve(settings) as served:
        yield served


@contextlib.asynccontextmanager
async def _serve(settings: Settings, config: FeedConfig | None = None) -> AsyncIterator[Dashboard]:
    """One dashboard (app, feed and uvicorn) on its own port, in this process."""
    # Loopback autotunes send buffers to megabytes, which would hide a stalled reader for a
    # long time; a fixed buffer (inherited by accepted sockets) behaves like a real link.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    settings = settings.model_copy(update={"dashboard_port": port})
    # A small queue so that a client that never reads is coalesced within a few frames.
    config = config or FeedConfig(
        client_queue_size=4, max_resets=10_000, driver_sample_s=0.2, metrics_sample_s=0.5
    )
    app = create_app(settings, config)
    server = uvicorn.Server(
        uvicorn_config(
            app,
            settings,
            host="127.0.0.1",
            log_config=None,
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[listener]))

    async def started() -> bool:
        return server.started

    await wait_until(started, timeout_s=10, what="the dashboard to listen")
    try:
        link = mint_dashboard_link(settings.secret or "", "test-viewer")
        yield Dashboard(port, link, settings, app)
    finally:
        server.should_exit = True
        await task
        listener.close()


async def _next(
    ws: ClientConnection,
    match: Callable[[Message], bool],
    *,
    timeout_s: float = 5.0,
    what: str = "a matching message",
) -> Message:
    """The first message satisfying `match`, within the deadline."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message: Message = decode(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        if match(message):
            return message
        seen.append(f"{message['kind']}#{message['seq']}:{sorted(set(message) - {'kind', 'seq'})}")
    raise AssertionError(f"no {what} within {timeout_s}s; got {seen[-8:]}")


class View:
    """What a page sees: the snapshot with every delta applied (dashboard.protocol.apply_delta)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.state: Message | None = None

    async def until(
        self, check: Callable[[Message], bool], *, timeout_s: float = 5.0, what: str = "a state"
    ) -> Message:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.state is not None and check(self.state):
                return self.state
            try:
                message: Message = decode(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                break
            self.state = (
                message if message["kind"] == "snapshot" else apply_delta(self.state or {}, message)
            )
        raise AssertionError(f"the page never showed {what} within {timeout_s}s")


def _ride_in(message: Message, ride_id: str) -> Message | None:
    rides = (
        message["rides"]
        if message["kind"] == "snapshot"
        else message.get("rides", {}).get("upsert", [])
    )
    return next((r for r in rides if r["ride_id"] == ride_id), None)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_ride_events_reach_a_websocket_client_as_deltas(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    keys = MarketKeys("sf", dashboard.settings.key_prefix)
    async with connect(dashboard.ws()) as ws:
        snapshot = await _next(ws, lambda m: m["kind"] == "snapshot", what="the snapshot")
        assert snapshot["market"]["id"] == "sf" and snapshot["rides"] == []
        ride = RideWriter(redis, keys, "ride-ws-1", (37.78, -122.41), (37.76, -122.43))
        await ride.step("requested")
        delta = await _next(
            ws, lambda m: _ride_in(m, "ride-ws-1") is not None, what="the requested ride"
        )
        assert delta["kind"] == "delta" and delta["seq"] > snapshot["seq"]
        assert _ride_in(delta, "ride-ws-1")["status"] == "requested"  # type: ignore[index]
        assert [e["type"] for e in delta["events"]] == ["ride.requested"]
        await ride.step("offered", driver_id="drv-1", pickup_eta_s=95)
        await ride.step("matched", pickup_eta_s=90)
        matched = await _next(
            ws, lambda m: (_ride_in(m, "ride-ws-1") or {}).get("status") == "matched"
        )
        view = _ride_in(matched, "ride-ws-1")
        assert view is not None and view["driver_id"] == "drv-1" and view["pickup_eta_s"] == 90.0
        assert [s["status"] for s in view["timeline"]] == ["requested", "offered", "matched"]
        await put_drivers(
            redis,
            keys,
            {"drv-1": (37.77, -122.42, "en_route"), "drv-2": (37.75, -122.45, "available")},
        )
        drivers = await _next(
            ws, lambda m: m["kind"] == "delta" and "drivers" in m, what="a driver sample"
        )
        assert {d["id"]: d["status"] for d in drivers["drivers"]["upsert"]} == {
            "drv-1": "en_route",
            "drv-2": "available",
        }
        if drivers.get("kpis", {}).get("drivers_online") != 2:  # same delta, or one of the next
            drivers = await _next(
                ws, lambda m: m.get("kpis", {}).get("drivers_online") == 2, what="driver KPIs"
            )
        assert drivers["kpis"]["drivers_available"] == 1 and drivers["kpis"]["open_requests"] == 0


async def test_a_client_that_never_reads_does_not_delay_one_that_does(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    keys = MarketKeys("sf", dashboard.settings.key_prefix)
    # ~250 kB snapshots: enough to fill the slow client's socket buffers at once.
    await put_drivers(
        redis,
        keys,
        {
            f"drv-{i:05d}": (37.72 + i % 97 / 1000, -122.50 + i % 89 / 1000, "available")
            for i in range(3000)
        },
    )
    async with httpx.AsyncClient() as http:
        dropped_before = _metric(
            (await http.get(f"{dashboard.http}/metrics")).text, "rp_dashboard_dropped_frames_total"
        )
    slow = await _stalled_client(dashboard)
    try:
        async with connect(dashboard.ws(), max_size=None) as fast:
            await _next(fast, lambda m: m["kind"] == "snapshot", what="the fast client's snapshot")
            latencies = []
            for i in range(25):
                ride_id = f"ride-fast-{i}"
                written = time.monotonic()
                await RideWriter(redis, keys, ride_id, (37.77, -122.42), (37.78, -122.40)).step(
                    "requested"
                )

                def carries_ride(m: Message, r: str = ride_id) -> bool:
                    return _ride_in(m, r) is not None

                await _next(fast, carries_ride, timeout_s=2.0, what=ride_id)
                latencies.append(time.monotonic() - written)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{dashboard.http}/metrics")).text
    finally:
        slow.close()
    assert max(latencies) < 1.0, f"the fast client waited up to {max(latencies):.2f}s for a delta"
    assert _metric(metrics, "rp_dashboard_dropped_frames_total") > dropped_before, (
        "the slow client lost no frames?"
    )
    assert _metric(metrics, "rp_dashboard_clients") >= 2


async def _stalled_client(dashboard: Dashboard) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads: a tiny receive buffer,
    so the server's writes back up after a few kilobytes."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", dashboard.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?token={dashboard.token} HTTP/1.1\r\nHost: 127.0.0.1:{dashboard.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1024), 5)
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock


async def test_two_dashboards_on_one_city_each_read_the_streams_and_serve_their_clients(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    """N dashboard processes share the browsers (docs/operations.md): each has its own feed."""
    keys = MarketKeys("sf", dashboard.settings.key_prefix)
    async with (
        _serve(dashboard.settings) as second,
        connect(dashboard.ws()) as one,
        connect(second.ws()) as two,
    ):
        assert second.port != dashboard.port
        snapshots = [await _next(ws, lambda m: m["kind"] == "snapshot") for ws in (one, two)]
        assert snapshots[0]["epoch"] != snapshots[1]["epoch"], "each process numbers its own"
        await RideWriter(redis, keys, "ride-two", (37.77, -122.42), (37.78, -122.40)).step(
            "requested"
        )
        for ws in (one, two):
            await _next(ws, lambda m: _ride_in(m, "ride-two") is not None, what="the ride")


async def test_the_feed_declines_permessage_deflate_that_a_browser_offers(
    dashboard: Dashboard,
) -> None:
    """Every client gets the same frame; compressing it once per socket cost more CPU than
    anything else per client (docs/benchmarks-dashboard.md)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", dashboard.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={dashboard.token} HTTP/1.1\r\nHost: 127.0.0.1:{dashboard.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    assert b"permessage-deflate" not in head.lower(), head


async def test_a_reconnecting_client_gets_only_the_deltas_it_missed(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    keys = MarketKeys("sf", dashboard.settings.key_prefix)
    async with connect(dashboard.ws()) as ws:
        snapshot = await _next(ws, lambda m: m["kind"] == "snapshot")
        last = await _next(ws, lambda m: m["kind"] == "delta", what="a first delta")
    await RideWriter(redis, keys, "ride-missed", (37.77, -122.42), (37.78, -122.40)).step(
        "requested"
    )
    async with connect(dashboard.ws(last_seq=last["seq"], epoch=snapshot["epoch"])) as ws:
        first = decode(await asyncio.wait_for(ws.recv(), 5))
        assert (first["kind"], first["seq"]) == ("delta", last["seq"] + 1), (
            "resumed with the next delta"
        )
        if _ride_in(first, "ride-missed") is None:
            await _next(
                ws, lambda m: _ride_in(m, "ride-missed") is not None, what="the missed ride"
            )
    async with connect(dashboard.ws(last_seq=last["seq"], epoch="another-process")) as ws:
        assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"


async def _close_code(uri: str, **options: Any) -> tuple[int | None, str]:
    async with connect(uri, **options) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    frame = closed.value.rcvd
    return (frame.code, frame.reason) if frame else (None, "")


async def test_the_feed_refuses_clients_without_a_dashboard_token(dashboard: Dashboard) -> None:
    rider = mint_token(dashboard.settings.secret or "", "rider", "rider-1")
    ops = mint_token(dashboard.settings.secret or "", "ops", "ops-1")  # API audience
    assert await _close_code(dashboard.ws(token=None)) == (1008, "unauthorized")
    assert await _close_code(dashboard.ws(token="not-a-token")) == (1008, "unauthorized")
    assert await _close_code(dashboard.ws(token=rider)) == (1008, "unauthorized")
    assert await _close_code(dashboard.ws(token=ops)) == (1008, "unauthorized")
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    async with connect(dashboard.ws(token=None), additional_headers=bearer) as ws:
        assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        refused = await http.get("/api/snapshot")
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        for api_token in (rider, ops):
            assert (
                await http.get("/api/snapshot", headers={"Authorization": f"Bearer {api_token}"})
            ).status_code == 401
        allowed = await http.get("/api/snapshot", headers=bearer)
        assert allowed.status_code == 200 and allowed.json()["kind"] == "snapshot"
        page = await http.get("/")
        assert page.status_code == 200 and "conn-badge" in page.text, (
            "the page itself loads without a token"
        )


async def test_the_page_and_the_health_check_answer_head(dashboard: Dashboard) -> None:
    """`curl -I` and HEAD health probes: 200 with GET's headers and no body (it was 405)."""
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        for path in ("/", "/healthz"):
            head, get = await http.head(path), await http.get(path)
            assert head.status_code == 200, f"HEAD {path}: {head.status_code}"
            assert (
                head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
            )
        opened = await http.head(f"/?token={dashboard.token}")
        assert opened.status_code == 303 and SESSION_COOKIE in opened.cookies


async def test_with_auth_disabled_the_dashboard_opens_without_a_token(settings: Settings) -> None:
    """RIDEPULSE_AUTH_ENABLED=false (README) opens the dashboard to anyone who reaches it; with
    no token there is no grant to count, so no per-token cap (dashboard/ws.py)."""
    unguarded = settings.model_copy(update={"auth_enabled": False, "dashboard_ws_per_token": 2})
    async with _serve(unguarded) as open_dashboard, contextlib.AsyncExitStack() as sockets:
        for _ in range(unguarded.dashboard_ws_per_token + 1):
            ws = await sockets.enter_async_context(connect(open_dashboard.ws(token=None)))
            assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"
        async with httpx.AsyncClient(base_url=open_dashboard.http) as http:
            snapshot = await http.get("/api/snapshot")
            assert snapshot.status_code == 200 and snapshot.json()["kind"] == "snapshot"


async def test_the_feed_refuses_a_page_from_another_origin(dashboard: Dashboard) -> None:
    assert await _close_code(dashboard.ws(), origin="http://evil.example") == (
        1008,
        "origin not allowed",
    )
    same = f"http://127.0.0.1:{dashboard.port}"
    async with connect(dashboard.ws(), origin=same) as ws:  # type: ignore[arg-type]
        assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"


async def test_an_unknown_market_of_any_length_is_refused_with_a_close_frame(
    dashboard: Dashboard,
) -> None:
    """The refusal's reason names the market; it was cut to 120 characters, and 80 `é` are 160
    bytes where a close frame holds 123: the handler died (`control frame too long`) and the
    client got no close frame at all."""
    for market in ("paris", "é" * 80, "🚕" * 60):
        code, reason = await _close_code(dashboard.ws(market=market))
        assert code == 1008, f"market {market[:8]!r}: no 1008 close frame ({code}, {reason!r})"
        assert reason.startswith("this dashboard serves no market"), reason
        assert len(reason.encode()) <= 123


async def test_ride_api_returns_the_timeline_or_a_json_404(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    keys = MarketKeys("sf", dashboard.settings.key_prefix)
    ride = RideWriter(redis, keys, "ride-api", (37.77, -122.42), (37.78, -122.40))
    await ride.step("requested", at_ms=1_800_000_000_000)
    await ride.step("expired", at_ms=1_800_000_060_000)
    headers = {"Authorization": f"Bearer {dashboard.token}"}
    async with httpx.AsyncClient(base_url=dashboard.http, headers=headers) as http:
        found = (await http.get("/api/rides/ride-api")).json()
        missing = await http.get("/api/rides/no-such-ride")
    assert found["status"] == "expired"
    assert found["timeline"] == [
        {"status": "requested", "at": 1_800_000_000_000},
        {"status": "expired", "at": 1_800_000_060_000},
    ]
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        no_route = await http.get("/no/such/page")
        wrong_method = await http.delete("/api/rides/ride-api")
    # the same JSON shape off the routes too (it was FastAPI's bare {"detail": "Not Found"})
    assert (no_route.status_code, no_route.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/api/rides/ride-x%2F", "/api/rides/ride-x/", "/healthz/"])
async def test_a_path_with_a_trailing_or_encoded_slash_is_a_json_404_not_a_redirect(
    dashboard: Dashboard, path: str
) -> None:
    """It was a 307 to the path without it, at the host the client named (`Host:`)."""
    headers = {"Authorization": f"Bearer {dashboard.token}", "Host": "evil.example"}
    async with httpx.AsyncClient(base_url=dashboard.http, headers=headers) as http:
        response = await http.get(path)
    assert response.status_code == 404, (response.status_code, response.headers)
    assert "location" not in response.headers, response.headers
    assert response.json()["error"] == "not_found", response.text


async def test_redis_out_of_reach_is_a_json_503_with_retry_after_not_a_bare_500(
    settings: Settings,
) -> None:
    """README: errors are JSON and a 503 carries Retry-After, as ingest answers the same outage
    (the dashboard had no handler for it: `500 text/plain Internal Server Error`)."""
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"  # a port no server listens on
    async with (
        _serve(settings.model_copy(update={"redis_url": nothing_there})) as dashboard,
        httpx.AsyncClient(base_url=dashboard.http) as http,
    ):
        response = await http.get(f"/api/rides/sf-x?token={dashboard.token}")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "unavailable",
        "detail": "storage is unavailable; retry shortly",
    }
    assert response.headers["retry-after"] == "1"


async def test_heartbeats_dead_letters_and_consumer_lag_reach_the_feed(
    dashboard: Dashboard, redis: aioredis.Redis
) -> None:
    prefix = dashboard.settings.key_prefix
    keys, global_keys = MarketKeys("sf", prefix), GlobalKeys(prefix)
    await redis.xgroup_create(keys.telemetry, "matching", id="$", mkstream=True)
    for _ in range(7):
        await redis.xadd(keys.telemetry, {"type": "driver.location"})
    await redis.xadd(global_keys.dead_letters, {"reason": "test"})
    await put_heartbeat(redis, prefix, "matching", processed=100, lag=7, ttl_s=30)
    async with connect(dashboard.ws()) as ws:
        view = View(ws)
        state = await view.until(
            lambda s: s["series"]["lag"].get("matching · telemetry", [None])[-1] == 7,
            what="the matching group's lag",
        )
        # KPIs refresh at most twice a second (FeedConfig.kpi_refresh_s): the count may trail
        state = await view.until(
            lambda s: s["kpis"]["dead_letters"] == 1, what="the dead letter in the KPIs"
        )
        await put_heartbeat(redis, prefix, "matching", processed=400, lag=0, ttl_s=30)
        state = await view.until(
            lambda s: [r["processed"] for r in s["services"]] == [400], what="the second beat"
        )
        (service,) = state["services"]
        assert (service["service"], service["consumer"], service["stale"]) == (
            "matching",
            "matching-1",
            False,
        )
        assert service["processed_per_s"] is not None and service["processed_per_s"] > 0


async def test_an_unwatched_feed_reads_drivers_rarely_and_a_new_client_wakes_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    feed = Feed(redis, settings, FeedConfig(driver_sample_s=0.05, idle_driver_sample_s=60))

    def samples() -> float:
        return REGISTRY.get_sample_value("rp_dashboard_driver_samples_total") or 0.0

    async def shown(driver_id: str) -> bool:
        return driver_id in feed.state.drivers

    async def loaded() -> bool:  # the load samples once, then the idle loop once, then it pauses
        return samples() - start >= 2

    start = samples()
    feed.start()
    try:
        await wait_until(loaded, timeout_s=10, what="the first samples")
        await put_drivers(redis, keys, {"idle-1": (37.7749, -122.4194, "available")})
        idle_from = samples()
        await asyncio.sleep(0.5)  # ten sampling periods of a watched feed
        assert samples() == idle_from, "an unwatched feed read the drivers again"
        assert not await shown("idle-1")

        client = feed.hub.connect()  # wakes the sampler: no waiting out the idle period
        await wait_until(lambda: shown("idle-1"), timeout_s=5, what="a fresh sample on connect")
        await put_drivers(redis, keys, {"watched-1": (37.7750, -122.4195, "available")})
        await wait_until(
            lambda: shown("watched-1"), timeout_s=5, what="2 Hz sampling while watched"
        )
        feed.hub.disconnect(client)
    finally:
        await feed.stop()


async def test_a_dashboard_link_becomes_an_httponly_strict_cookie_and_leaves_the_url(
    dashboard: Dashboard,
) -> None:
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        opened = await http.get(f"/?token={dashboard.token}")
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert "secure" not in attributes, "served over plain HTTP: a Secure cookie never returns"
        session = opened.cookies[SESSION_COOKIE]
        assert session != dashboard.token, "the link itself must not become the session"
        viewer = verify_token(dashboard.settings.secret or "", session, audience="dashboard")
        assert viewer.expires_at - time.time() > DASHBOARD_LINK_TTL_S, "session outlives link"
        # docs/security.md: a session lasts 12 hours, the cookie as long as its token
        assert 12 * 3600 - 60 <= viewer.expires_at - time.time() <= 12 * 3600
        assert "max-age=43200" in attributes, cookie
        # the cookie alone opens the snapshot and the feed
        snap = await http.get("/api/snapshot")
        assert snap.status_code == 200 and snap.json()["kind"] == "snapshot"
    headers = {"Cookie": f"{SESSION_COOKIE}={session}"}
    async with connect(dashboard.ws(token=None), additional_headers=headers) as ws:
        assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"


async def test_a_link_keeps_its_other_parameters_when_it_leaves_the_url(
    dashboard: Dashboard,
) -> None:
    """`/?token=<link>&market=nyc` answered `303 → /`: the viewer landed on the default
    market. Only the token leaves the address bar."""
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        opened = await http.get("/", params={"market": "nyc", "token": dashboard.token, "x": "1"})
        assert opened.status_code == 303 and opened.headers["location"] == "/?market=nyc&x=1"
        assert SESSION_COOKIE in opened.cookies
        stale = await http.get("/", params={"token": "garbage", "market": "nyc"})
        assert stale.headers["location"] == "/?market=nyc" and "set-cookie" not in stale.headers


@pytest.mark.parametrize(
    ("proxies", "secure"), [("127.0.0.1,::1", True), ("*", True), ("10.0.0.2", False)]
)
async def test_the_cookie_is_secure_behind_a_tls_proxy_the_settings_trust(
    settings: Settings, proxies: str, secure: bool
) -> None:
    """docs/security.md: behind a TLS-terminating proxy the cookie gets `Secure`, when the
    proxy is one RIDEPULSE_FORWARDED_ALLOW_IPS names; anyone else's X-Forwarded-Proto is not
    believed (this client connects from 127.0.0.1)."""
    trusting = settings.model_copy(update={"forwarded_allow_ips": proxies})
    async with _serve(trusting) as dashboard, httpx.AsyncClient(base_url=dashboard.http) as http:
        link = f"/?token={dashboard.token}"
        opened = await http.get(link, headers={"X-Forwarded-Proto": "https"})
    attributes = {part.strip().lower() for part in opened.headers["set-cookie"].split(";")[1:]}
    assert ("secure" in attributes) is secure, opened.headers["set-cookie"]


async def _session_of(http: httpx.AsyncClient, link: str) -> str:
    opened = await http.get(f"/?token={link}")
    assert opened.status_code == 303, opened
    return opened.cookies[SESSION_COOKIE]


async def test_only_a_link_opens_a_session_and_a_session_opens_no_other(
    dashboard: Dashboard,
) -> None:
    """A session sent as `?token=` (or re-spelt with a `=`) sets no cookie: it answered a new
    12 h session, so one link kept a viewer in for ever. The session still opens the APIs and
    the feed, and the link itself still opens a session (and the APIs)."""
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        session = await _session_of(http, dashboard.token)
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        for renewal in (session, session + "="):
            renewed = await http.get(f"/?token={renewal}")
            assert renewed.status_code == 303, renewed
            assert "set-cookie" not in renewed.headers, "a session was exchanged for another"
        assert (await http.get("/api/snapshot")).status_code == 401
        bearer = {"Authorization": f"Bearer {session}"}
        assert (await http.get("/api/snapshot", headers=bearer)).status_code == 200
        assert (await http.get(f"/api/snapshot?token={dashboard.token}")).status_code == 200
        assert (await _session_of(http, dashboard.token)).count(".") == 2, "the link still opens"
    async with connect(dashboard.ws(token=session)) as ws:
        assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"
    assert verify_token(dashboard.settings.secret or "", session, "dashboard").use == "session"


@pytest.mark.parametrize(
    ("proxies", "admitted"), [("127.0.0.1,::1", True), ("*", True), ("10.0.0.2", False)]
)
async def test_the_feed_admits_the_public_origin_a_trusted_proxy_forwards(
    settings: Settings, proxies: str, admitted: bool
) -> None:
    """docs/security.md: behind a TLS proxy that rewrites Host (nginx's default), the page's
    Origin names the host in X-Forwarded-Host; the feed compared Origin with Host only and
    refused every browser. The header is believed only from a proxy the settings trust (this
    client connects from 127.0.0.1), so nobody else can name the origin they come from."""
    trusting = settings.model_copy(update={"forwarded_allow_ips": proxies})
    proxied = {"X-Forwarded-Host": "dash.example.com", "X-Forwarded-Proto": "https"}
    async with _serve(trusting) as dashboard:
        uri = dashboard.ws()
        public = Origin("https://dash.example.com")
        local = Origin(f"http://127.0.0.1:{dashboard.port}")  # where the proxy reached it
        # the forwarded host is the origin when the proxy is trusted, else the Host still is
        ok, wrong = (public, local) if admitted else (local, public)
        async with connect(uri, origin=ok, additional_headers=proxied) as ws:
            assert decode(await asyncio.wait_for(ws.recv(), 5))["kind"] == "snapshot"
        refused = await _close_code(uri, origin=wrong, additional_headers=proxied)
        assert refused == (1008, "origin not allowed"), (proxies, wrong)


async def test_an_expired_or_api_link_sets_no_cookie(dashboard: Dashboard) -> None:
    secret = dashboard.settings.secret or ""
    expired = mint_dashboard_link(secret, "late", ttl_s=-5)
    ops = mint_token(secret, "ops", "ops-1")
    async with httpx.AsyncClient(base_url=dashboard.http) as http:
        for link in (expired, ops, "garbage"):
            opened = await http.get(f"/?token={link}")
            assert opened.status_code == 303 and opened.headers["location"] == "/"
            assert "set-cookie" not in opened.headers
        assert (await http.get("/api/snapshot")).status_code == 401


async def test_an_open_feed_closes_with_4401_when_its_token_expires(
    dashboard: Dashboard,
) -> None:
    short = mint_dashboard_link(dashboard.settings.secret or "", "brief", ttl_s=2)
    async with connect(dashboard.ws(token=short)) as ws:
        with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 (read until closed)
            while True:  # snapshot and deltas, until the server closes
                await asyncio.wait_for(ws.recv(), 10)
    frame = closed.value.rcvd
    assert frame is not None and (frame.code, frame.reason) == (TOKEN_EXPIRED, "token expired")


async def _admitted(uri: str, headers: dict[str, str] | None = None) -> ClientConnection | None:
    """An open feed socket (its snapshot read), or None when the upgrade got the cap's 429."""
    try:
        ws = await connect(uri, open_timeout=5, additional_headers=headers)
    except InvalidStatus as refused:
        if refused.response.status_code != 429:
            raise AssertionError(f"expected 101 or the cap's 429, got {refused.response}") from None
        return None
    await _next(ws, lambda m: m["kind"] == "snapshot", what="the snapshot")
    return ws


async def test_one_token_holds_at_most_its_cap_of_feed_sockets_and_a_closed_one_frees_a_slot(
    settings: Settings,
) -> None:
    """RIDEPULSE_DASHBOARD_WS_PER_TOKEN=2: the third socket of one token is refused at the
    upgrade with 429 + Retry-After, another token is not, and a socket that closes (cleanly or
    by a dropped connection) gives its slot back."""
    capped = settings.model_copy(update={"dashboard_ws_per_token": 2})
    async with _serve(capped) as dashboard, contextlib.AsyncExitStack() as sockets:
        uri = dashboard.ws()
        close_later = sockets.push_async_callback  # every socket opened here closes at the end
        one, two = [await connect(uri, open_timeout=5) for _ in range(2)]
        for ws in (one, two):
            close_later(ws.close)
            await _next(ws, lambda m: m["kind"] == "snapshot", what="a capped token's snapshot")
        async with httpx.AsyncClient(base_url=dashboard.http) as http:
            refused_before = _metric((await http.get("/metrics")).text, REFUSED_METRIC)

        with pytest.raises(InvalidStatus) as third:
            await connect(uri, open_timeout=5)
        response = third.value.response
        assert response.status_code == 429, f"expected 429 past the cap, got {response}"
        assert int(response.headers["Retry-After"]) >= 1, response.headers
        assert orjson.loads(response.body or b"{}")["error"] == "rate_limited", response.body
        async with httpx.AsyncClient(base_url=dashboard.http) as http:
            refused_after = _metric((await http.get("/metrics")).text, REFUSED_METRIC)
        assert refused_after == refused_before + 1

        other = mint_dashboard_link(dashboard.settings.secret or "", "another-viewer")
        assert other != dashboard.token
        another = await _admitted(dashboard.ws(token=other))
        assert another is not None, "another token was refused by the first token's cap"
        close_later(another.close)

        await one.close()  # a clean close: the server sees it asynchronously
        again = await wait_until(lambda: _admitted(uri), timeout_s=10, what="a freed slot")
        close_later(again.close)
        assert await _admitted(uri) is None, "two sockets open again: the cap must hold"

        two.transport.abort()  # a dropped connection: no close frame, the TCP reset only
        after_drop = await wait_until(
            lambda: _admitted(uri), timeout_s=10, what="the dropped socket's slot"
        )
        close_later(after_drop.close)
        assert await _admitted(uri) is None, "the cap counts the socket that took the slot"


async def test_a_link_and_every_session_opened_from_it_share_one_cap(settings: Settings) -> None:
    """docs/security.md: the cap counts a grant, not a token's text. Each exchange of a link
    in a new second made a session of its own bytes with a cap of its own (one link opened 100
    sockets in 5 s), and `S=` verified as `S` but was counted apart."""
    capped = settings.model_copy(update={"dashboard_ws_per_token": 2})
    async with _serve(capped) as dashboard, contextlib.AsyncExitStack() as sockets:
        async with httpx.AsyncClient(base_url=dashboard.http) as http:
            first = await _session_of(http, dashboard.token)

            async def another_session() -> str | None:
                # iat is in whole seconds: a session minted in a later second differs in bytes
                session = await _session_of(http, dashboard.token)
                return session if session != first else None

            second = await wait_until(
                another_session, timeout_s=5, interval_s=0.2, what="a second session"
            )
        for session in (first, second):  # two browsers' cookies, one socket each
            ws = await _admitted(
                dashboard.ws(token=None), {"Cookie": f"{SESSION_COOKIE}={session}"}
            )
            assert ws is not None, "a session of a link under its cap was refused"
            sockets.push_async_callback(ws.close)
        for over in (dashboard.token, first, first + "="):
            assert await _admitted(dashboard.ws(token=over)) is None, f"past the cap: {over}"
        other = mint_dashboard_link(dashboard.settings.secret or "", "test-viewer")  # same sub
        another = await _admitted(dashboard.ws(token=other))
        assert another is not None, "another link was refused by the first link's cap"
        sockets.push_async_callback(another.close)
