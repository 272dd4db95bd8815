"""The page's badge says `stale` while the dashboard's Redis is frozen, and `live` again after.

The page judged staleness from any message: with Redis frozen (SIGSTOP; a partition looks the
same) the server still sends the deltas that time alone makes (a match leaving the last minute),
so the badge said live on figures that had stopped. It now judges from the last series point,
which the server samples once a second only while its reads succeed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, WebSocket, expect

from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.settings import Settings
from tests.browser.test_dashboard_page import (  # noqa: F401 (fixtures)
    CHROMIUM,
    DashboardProcess,
    browser,
    page,
)
from tests.support.dashboard_city import RideWriter
from tests.support.frozen import frozen

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium"),
]

STALE_WITHIN_S = 10.0  # the page's STALE_AFTER_S (5) after the last point, plus a loaded machine
MATCHES = 50  # matched 58 s down to 33.5 s ago: one leaves the last minute every half second


@pytest.fixture
async def dashboard_alone(
    own_server: EmbeddedRedis, settings: Settings, tmp_path: Path
) -> AsyncIterator[DashboardProcess]:
    process = DashboardProcess(settings.model_copy(update={"redis_url": own_server.url}), tmp_path)
    try:
        await process.start()
        yield process
    finally:
        process.kill()


async def test_the_badge_goes_stale_while_redis_is_frozen_and_live_after(
    page: Page,  # noqa: F811
    dashboard_alone: DashboardProcess,
    own_server: EmbeddedRedis,
    settings: Settings,
) -> None:
    dashboard = dashboard_alone
    own = settings.model_copy(update={"redis_url": own_server.url})
    frames: list[float] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framereceived", lambda _: frames.append(time.monotonic()))

    page.on("websocket", watch)
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")
    badge = page.locator("#conn-badge")
    await expect(badge).to_have_attribute("data-state", "live", timeout=10_000)

    redis = connect(own)
    try:
        keys = MarketKeys("sf", settings.key_prefix)
        now = now_ms()
        for i in range(MATCHES):
            ride = RideWriter(redis, keys, f"ride-{i:03d}", (37.78, -122.41), (37.77, -122.42))
            matched_at = now - 58_000 + i * 500
            await ride.step("requested", at_ms=matched_at - 4_000)
            await ride.step("matched", at_ms=matched_at, driver_id=f"drv-{i:03d}")
    finally:
        await redis.aclose()
    await page.wait_for_function(
        """() => Number(document.querySelector('[data-kpi="matched_last_min"] .kpi-value')
                 ?.dataset.value || 0) >= 20""",
        timeout=10_000,
    )

    with frozen(own_server):
        frozen_at = time.monotonic()
        await expect(badge).to_have_attribute("data-state", "stale", timeout=STALE_WITHIN_S * 1000)
        stale_after_s = time.monotonic() - frozen_at
        frames_while_frozen = sum(1 for t in frames if t > frozen_at)
    # what fooled the old page: deltas kept coming while nothing could be read
    assert frames_while_frozen > 0, "no frame arrived while frozen: the test proves nothing"
    assert stale_after_s < STALE_WITHIN_S, f"stale {stale_after_s:.1f} s into the freeze"
    await expect(badge).to_have_attribute("data-state", "live", timeout=20_000)
