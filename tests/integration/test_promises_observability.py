"""Two documented promises about watching the platform, each held to its words:

- docs/operations.md, Observing: "consumers expose [/metrics] on `RIDEPULSE_METRICS_PORT` when
  set", with the metric names listed there: a real `ridepulse run pricing` process serves them,
  and its processed counter rises for an event it consumed.
- docs/security.md, WebSocket caps: "A socket's slot is freed by every way it ends: … the feed
  dropping a client too slow to read, the token expiring (4401)". The cap is counted by the
  token's grant (a link's `jti`, ridepulse/ws_cap.py), not by its subject."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dashboard.config import FeedConfig
from loadtests.platform import clean_env
from ridepulse.auth import mint_dashboard_link, verify_token
from ridepulse.contracts.events import Point
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_server import free_port
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from ridepulse.ws_cap import ConnectionCap
from ridepulse.ws_expiry import TOKEN_EXPIRED
from tests.integration.test_dashboard_feed import (
    _admitted,
    _close_code,
    _next,
    _serve,
    _stalled_client,
)
from tests.support.dashboard_city import RideWriter, put_drivers
from tests.support.processes import run_service
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

# ---- 1. a consumer without HTTP serves Prometheus metrics on RIDEPULSE_METRICS_PORT -----------

# docs/operations.md lists one set of names for every /metrics endpoint. These come from the bus
# (ridepulse/bus/metrics.py), so every consumer serves them; the other two are the dashboard's
# own (dashboard/metrics.py) and are served by the dashboard's /metrics, not by a consumer.
CONSUMER_METRICS = {
    "rp_events_processed_total": "counter",
    "rp_events_failed_total": "counter",
    "rp_events_dead_lettered_total": "counter",
    "rp_entries_lost_total": "counter",
    "rp_handler_seconds": "histogram",
    "rp_consumer_lag": "gauge",
    "rp_events_published_total": "counter",
    "rp_groups_recreated_total": "counter",
}
DASHBOARD_METRICS = {"rp_dashboard_dropped_frames_total", "rp_dashboard_driver_samples_total"}

CONSUMER = "pricing-1"
REQUESTED = {"service": "pricing", "group": "pricing", "type": "ride.requested"}
HOT = Point(lat=37.7793, lon=-122.4193)
DROPOFF = Point(lat=37.7568, lon=-122.4120)


def _declared(text: str) -> dict[str, str]:
    """Every metric the exposition declares (`# TYPE name kind`), labelled children or not."""
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            declared[name] = kind
    return declared


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of the sample `name` whose labels include `labels`, None when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


async def test_a_consumer_serves_the_documented_metrics_on_its_metrics_port(
    redis: aioredis.Redis, redis_url: str, settings: Settings, tmp_path: Path
) -> None:
    """docs/operations.md: "consumers expose it on `RIDEPULSE_METRICS_PORT` when set" — a real
    `ridepulse run pricing` (no HTTP API of its own) answers GET /metrics on that port with every
    listed bus metric, and `rp_events_processed_total` counts the ride request it consumed."""
    assert not DASHBOARD_METRICS & CONSUMER_METRICS.keys()
    port = free_port()
    prefix = settings.key_prefix
    log_path = tmp_path / "pricing.log"
    env = clean_env(
        RIDEPULSE_REDIS_URL=redis_url,  # the operator's user: the ACL users are on `rp:`
        RIDEPULSE_KEY_PREFIX=prefix,
        RIDEPULSE_DATA_DIR=str(tmp_path / "data"),
        RIDEPULSE_CONSUMER_NAME=CONSUMER,
        RIDEPULSE_HOST="127.0.0.1",
        RIDEPULSE_METRICS_PORT=str(port),
        RIDEPULSE_HEARTBEAT_INTERVAL_S="0.5",
        RIDEPULSE_BLOCK_MS="200",
        RIDEPULSE_LOG_FORMAT="json",
        RIDEPULSE_LOG_LEVEL="info",
    )
    proc = run_service("pricing", env, log_path)

    def output() -> str:
        return log_path.read_text()[-3000:]

    heartbeat = GlobalKeys(prefix).heartbeat("pricing", CONSUMER)

    async def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pricing exited with {proc.returncode}: {output()}")
        raw: Any = await redis.get(heartbeat)
        return raw is not None and orjson.loads(raw).get("pid") == proc.pid

    try:
        # the heartbeat is what the supervisor reads as ready; the metrics server starts before it
        await wait_until(ready, timeout_s=30, interval_s=0.1, what="pricing's heartbeat")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            before = await http.get("/metrics")
            assert before.status_code == 200, before.text[:500]
            declared = _declared(before.text)
            missing = {n: k for n, k in CONSUMER_METRICS.items() if declared.get(n) != k}
            assert not missing, f"not served as documented: {missing}; served: {declared}"
            processed_before = _sample(before.text, "rp_events_processed_total", REQUESTED) or 0.0

            store = RideStore(redis, MarketKeys("sf", prefix), "test")
            await store.request_ride(
                ride_id="sf-metrics-1", rider_id="u1", pickup=HOT, dropoff=DROPOFF, deadline_s=60
            )

            async def counted() -> str | None:
                text = (await http.get("/metrics")).text
                now = _sample(text, "rp_events_processed_total", REQUESTED) or 0.0
                return text if now > processed_before else None

            after = await wait_until(
                counted, timeout_s=15, interval_s=0.1, what="rp_events_processed_total to rise"
            )
            rides_lag = {"group": "pricing", "stream": MarketKeys("sf", prefix).rides}

            # the gauge is refreshed by each heartbeat (0.5 s here): one after the read shows 0
            async def caught_up() -> bool:
                text = (await http.get("/metrics")).text
                return _sample(text, "rp_consumer_lag", rides_lag) == 0.0

            await wait_until(caught_up, timeout_s=10, what="rp_consumer_lag of the ride stream")
        processed = _sample(after, "rp_events_processed_total", REQUESTED)
        assert processed == processed_before + 1, f"one event consumed, counter at {processed}"
        handled = _sample(
            after, "rp_handler_seconds_count", {"service": "pricing", "type": "ride.requested"}
        )
        assert handled is not None and handled >= 1, "the handler's time was not observed"
        # it appends no event here, but beats: its heartbeats are entries appended too
        beats = _sample(after, "rp_events_published_total", {"stream": GlobalKeys(prefix).health})
        assert beats is not None and beats >= 1, "pricing's heartbeats were not counted"

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, f"pricing did not stop cleanly: {output()}"
        events = [orjson.loads(line).get("event") for line in log_path.read_bytes().splitlines()]
        assert "service.stopped" in events, output()
        assert await redis.exists(heartbeat) == 0, "a clean stop removes the heartbeat key"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---- 2. a feed socket's slot is freed on token expiry (4401) and when the hub drops it --------

HOT_LL = (HOT.lat, HOT.lon)


def _one_per_token(settings: Settings) -> Settings:
    return settings.model_copy(update={"dashboard_ws_per_token": 1})


async def _empty(cap: ConnectionCap) -> bool:
    return len(cap) == 0


def _clients_dropped() -> float:
    return REGISTRY.get_sample_value("rp_dashboard_clients_dropped_total") or 0.0


async def _closed_by_server(ws: ClientConnection, timeout_s: float) -> tuple[int, str]:
    """Read (snapshot, deltas) until the server closes; its close frame's code and reason."""
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 (read until closed)
        while True:
            await asyncio.wait_for(ws.recv(), timeout_s)
    frame = closed.value.rcvd
    assert frame is not None, f"no close frame from the server: {closed.value!r}"
    return frame.code, frame.reason


async def test_a_feed_socket_closed_at_token_expiry_gives_its_slot_back(
    settings: Settings,
) -> None:
    """docs/security.md: a slot is freed by "the token expiring (4401)". The cap counts by the
    link's grant (its `jti`), so a fresh link of the same subject has slots of its own whether
    or not the old one's is freed; an expired token cannot open a socket again (1008). So the
    freed slot shows only in the cap's table: the expired link's entry leaves it."""
    config = FeedConfig(client_queue_size=4, driver_sample_s=0.2, metrics_sample_s=0.5)
    async with _serve(_one_per_token(settings), config) as dashboard:
        secret = settings.secret or ""
        cap: ConnectionCap = dashboard.app.state.feed_cap
        # 3 s: a few hundred ms of checks below must fit before exp (whole seconds, so 2-3 s)
        short = mint_dashboard_link(secret, "brief", ttl_s=3)
        short_grant = verify_token(secret, short, "dashboard").grant  # while it is valid
        async with connect(dashboard.ws(token=short), open_timeout=5) as expiring:
            await _next(expiring, lambda m: m["kind"] == "snapshot", what="the snapshot")
            assert await _admitted(dashboard.ws(token=short)) is None, "a cap of 1 must hold"
            fresh = mint_dashboard_link(secret, "brief")  # same subject, a link of its own
            fresh_grant = verify_token(secret, fresh, "dashboard").grant
            async with connect(dashboard.ws(token=fresh), open_timeout=5) as other:
                await _next(other, lambda m: m["kind"] == "snapshot", what="the fresh snapshot")
                assert len(cap) == 2, "one entry per token, not per subject"

                code, reason = await _closed_by_server(expiring, timeout_s=10)
                assert (code, reason) == (TOKEN_EXPIRED, "token expired")

                async def released() -> bool:
                    return len(cap) == 1

                await wait_until(released, timeout_s=5, what="the expired token's slot")
                # the one entry left is the fresh token's; the expired one holds nothing, so a
                # slot for it is there to take (taken and given back at once, in this loop)
                assert cap.acquire(short_grant), "the expired link still holds its slot"
                cap.release(short_grant)
                assert not cap.acquire(fresh_grant), "the fresh link's own socket holds its slot"
                assert await _close_code(dashboard.ws(token=short)) == (1008, "unauthorized")
        await wait_until(lambda: _empty(cap), timeout_s=5, what="every slot back")


async def test_a_feed_client_dropped_for_reading_too_slowly_gives_its_slot_back(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """docs/security.md: a slot is freed by "the feed dropping a client too slow to read": with a
    cap of 1, the same token that a stalled socket held is admitted again once the hub drops
    that socket (FeedConfig.max_resets coalesces without a frame taken)."""
    config = FeedConfig(
        client_queue_size=4, max_resets=2, driver_sample_s=0.2, metrics_sample_s=0.5
    )
    keys = MarketKeys("sf", settings.key_prefix)
    # a snapshot far larger than the socket buffers: the stalled client's first frame blocks
    await put_drivers(
        redis,
        keys,
        {
            f"drv-{i:05d}": (37.72 + i % 97 / 1000, -122.50 + i % 89 / 1000, "available")
            for i in range(3000)
        },
    )
    async with _serve(_one_per_token(settings), config) as dashboard:
        cap: ConnectionCap = dashboard.app.state.feed_cap
        uri = dashboard.ws()
        dropped_before = _clients_dropped()
        stalled = await _stalled_client(dashboard)  # the dashboard's token, never reads
        try:
            assert await _admitted(uri) is None, "the stalled socket holds the token's one slot"
            rides = 0

            async def dropped() -> bool:
                # each ride is a delta; a full queue is coalesced, and past max_resets dropped
                nonlocal rides
                rides += 1
                ride = RideWriter(redis, keys, f"ride-slow-{rides}", (37.77, -122.42), HOT_LL)
                await ride.step("requested")
                return _clients_dropped() > dropped_before

            await wait_until(
                dropped, timeout_s=30, interval_s=0.05, what="the hub to drop the stalled client"
            )

            async def readmitted() -> ClientConnection | None:
                return await _admitted(uri)

            again = await wait_until(readmitted, timeout_s=10, what="the dropped client's slot")
            try:
                assert len(cap) == 1, "the new socket holds the token's only entry"
                assert await _admitted(uri) is None, "the cap counts the socket that took the slot"
            finally:
                await again.close()
        finally:
            stalled.close()
        await wait_until(lambda: _empty(cap), timeout_s=5, what="every slot back")
