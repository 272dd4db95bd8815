"""The dashboard page in Debian's Chromium (never `playwright install`): it loads with no request
leaving 127.0.0.1, shows drivers and rides as Redis changes, follows a ride to `completed`,
survives a dashboard restart without a reload, and mirrors the feed's delta rule in JS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from dashboard.config import FeedConfig
from dashboard.hub import Hub
from dashboard.protocol import apply_delta, decode
from dashboard.state import CityState
from ridepulse.auth import mint_dashboard_link
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings
from tests.support.dashboard_city import CitySim, RideWriter, put_drivers
from tests.support.waiting import wait_until
from tests.unit.test_dashboard_state import RandomCity

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (make deps installs it)",
    ),
]


class DashboardProcess:
    """`dashboard.service.main` in its own process, so a test can kill and restart it."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / "dashboard.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_")}
        self.env = {
            **clean,
            "RIDEPULSE_REDIS_URL": settings.redis_url or "",
            "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
            "RIDEPULSE_SECRET": settings.secret or "",
            "RIDEPULSE_DATA_DIR": str(log_dir),
            "RIDEPULSE_DASHBOARD_PORT": str(self.port),
            "RIDEPULSE_BLOCK_MS": "200",
            "RIDEPULSE_HEARTBEAT_INTERVAL_S": "1.0",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.token = mint_dashboard_link(settings.secret or "", "browser-test")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        code = (
            "from dashboard.service import main; from ridepulse.settings import Settings; "
            "main(Settings())"
        )
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", code], env=self.env, cwd=REPO, stdout=log, stderr=log
            )

    async def start(self) -> None:
        self.process = self._spawn()

        async def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, (
                self.log_path.read_text()
            )
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{self.url}/healthz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(healthy, timeout_s=20, what="the dashboard process to answer /healthz")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, as the supervisor does; the exit code (None when it had to be killed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.process.returncode


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def dashboard(settings: Settings, tmp_path: Path) -> AsyncIterator[DashboardProcess]:
    process = DashboardProcess(settings, tmp_path)
    await process.start()
    yield process
    process.stop()


class Requests:
    """Every URL the page asks for, WebSockets included."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))

    def leaving(self, port: int) -> list[str]:
        local = re.compile(rf"^(https?|wss?)://127\.0\.0\.1:{port}/")
        return [u for u in self.urls if not local.match(u) and not u.startswith(("data:", "blob:"))]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert not errors, f"the page threw: {errors}"


async def _status(page: Page, ride_id: str, status: str) -> None:
    await expect(page.locator(f'#rides tr[data-ride-id="{ride_id}"]')).to_have_attribute(
        "data-status", status, timeout=5000
    )


async def _kpi(page: Page, name: str, value: str) -> None:
    await expect(page.locator(f'[data-kpi="{name}"] .kpi-value')).to_have_attribute(
        "data-value", value, timeout=5000
    )


async def test_page_loads_offline_and_follows_a_ride_to_completed(
    page: Page, dashboard: DashboardProcess, redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    requests = Requests(page)
    console_errors: list[str] = []  # CSP violations, failed loads, uncaught promise rejections
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")
    await expect(page.locator("#conn-badge")).to_contain_text("live", timeout=10_000)
    # The link's token left the address bar; the feed runs on a cookie scripts cannot read.
    assert page.url == f"{dashboard.url}/"
    assert "rp_dashboard" not in await page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["rp_dashboard"]["httpOnly"] and cookies["rp_dashboard"]["sameSite"] == "Strict"
    await put_drivers(
        redis,
        keys,
        {
            "drv-a": (37.78, -122.42, "available"),
            "drv-b": (37.77, -122.41, "available"),
            "drv-c": (37.76, -122.44, "en_route"),
            "drv-off": (37.75, -122.45, "offline"),
        },
    )
    await expect(page.locator("#map")).to_have_attribute("data-drivers", "3", timeout=5000)
    await expect(page.locator('[data-legend="available"] .count')).to_have_text("2")
    await expect(page.locator('[data-legend="en_route"] .count')).to_have_text("1")
    await _kpi(page, "drivers_online", "3")
    await _kpi(page, "drivers_available", "2")

    ride = RideWriter(redis, keys, "ride-b1", (37.775, -122.418), (37.79, -122.40))
    await ride.step("requested")
    await _status(page, "ride-b1", "requested")
    await _kpi(page, "open_requests", "1")
    await ride.step("offered", driver_id="drv-a", pickup_eta_s=140)
    await _status(page, "ride-b1", "offered")
    # Explicit step times so the quality KPIs are known: pickup 90 s, trip 300 s quoted 330 s.
    matched_at = now_ms()
    await ride.step("matched", at_ms=matched_at, pickup_eta_s=130, trip_eta_s=330)
    await _status(page, "ride-b1", "matched")
    await _kpi(page, "open_requests", "0")
    await _kpi(page, "matched_last_min", "1")
    await page.locator('#rides tr[data-ride-id="ride-b1"]').click()
    detail = page.locator("#ride-detail")
    await expect(detail).to_have_attribute("data-ride-id", "ride-b1")
    for status, after_s in (("driver_arrived", 90), ("started", 95), ("completed", 395)):
        fare = 23.5 if status == "completed" else None
        await ride.step(status, at_ms=matched_at + after_s * 1000, fare=fare)
        await _status(page, "ride-b1", status)
    await expect(detail).to_have_attribute("data-status", "completed")
    steps = detail.locator(".timeline li[data-status]")
    await expect(steps).to_have_count(6)
    assert await steps.evaluate_all("els => els.map(e => e.dataset.status)") == [
        "requested",
        "offered",
        "matched",
        "driver_arrived",
        "started",
        "completed",
    ]
    await _kpi(page, "completed", "1")
    await _kpi(page, "cancelled", "0")
    await _kpi(page, "pickup_mean_s", "90")
    await _kpi(page, "trip_eta_mae_s", "30")
    await _kpi(page, "fulfilment_rate", "1")
    await expect(page.locator('[data-kpi="fulfilment_rate"] .kpi-value')).to_have_text("100.0%")
    await expect(page.locator('[data-kpi="trip_eta_mae_s"] .kpi-value')).to_have_text("30s")

    await page.locator('[data-filter="ride.completed"]').click()
    await expect(page.locator("#events li[data-type]")).to_have_count(1)
    await expect(page.locator("#events li[data-type]")).to_have_attribute(
        "data-type", "ride.completed"
    )
    assert requests.urls, "the page made no requests at all?"
    assert requests.leaving(dashboard.port) == [], "requests left 127.0.0.1"
    assert console_errors == []


async def test_the_market_switch_follows_another_markets_city(
    page: Page, settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    dashboard = DashboardProcess(settings, tmp_path)
    dashboard.env["RIDEPULSE_MARKETS"] = "sf,nyc"
    await dashboard.start()
    try:
        sf, nyc = (MarketKeys(m, settings.key_prefix) for m in ("sf", "nyc"))
        await put_drivers(
            redis, sf, {"sf-a": (37.78, -122.42, "available"), "sf-b": (37.77, -122.41, "busy")}
        )
        await put_drivers(
            redis,
            nyc,
            {
                "nyc-a": (40.75, -73.99, "available"),
                "nyc-b": (40.76, -73.98, "available"),
                "nyc-c": (40.74, -73.99, "en_route"),
            },
        )
        await RideWriter(redis, nyc, "nyc-r1", (40.75, -73.99), (40.77, -73.97)).step("requested")
        await page.goto(f"{dashboard.url}/?token={dashboard.token}")
        await expect(page.locator("#conn-badge")).to_contain_text("live", timeout=10_000)
        await expect(page.locator("#market-switch")).to_be_visible()
        options = page.locator("#market-select option")
        assert await options.evaluate_all("els => els.map(e => e.value)") == ["sf", "nyc"]
        await expect(page.locator("#market-name")).to_have_text("San Francisco")
        await expect(page.locator("#map")).to_have_attribute("data-drivers", "2", timeout=5000)
        await expect(page.locator('#rides tr[data-ride-id="nyc-r1"]')).to_have_count(0)

        await page.select_option("#market-select", "nyc")
        await expect(page.locator("#market-name")).to_have_text("New York", timeout=10_000)
        await expect(page.locator("#map")).to_have_attribute("data-drivers", "3", timeout=5000)
        await _status(page, "nyc-r1", "requested")
        centre = await page.evaluate(
            "(() => { const c = window.ridepulse.map.map.getCenter(); return [c.lat, c.lng]; })()"
        )
        assert 40.7 < centre[0] < 40.82 and -74.02 < centre[1] < -73.93, centre

        await page.select_option("#market-select", "sf")
        await expect(page.locator("#market-name")).to_have_text("San Francisco", timeout=10_000)
        await expect(page.locator("#map")).to_have_attribute("data-drivers", "2", timeout=5000)
        await expect(page.locator('#rides tr[data-ride-id="nyc-r1"]')).to_have_count(0)

        # the switch writes the market to the address bar, so a reload stays on it
        await page.select_option("#market-select", "nyc")
        await expect(page.locator("#market-name")).to_have_text("New York", timeout=10_000)
        assert page.url == f"{dashboard.url}/?market=nyc"
        await page.reload()
        await expect(page.locator("#market-name")).to_have_text("New York", timeout=10_000)
        # and a link that names a market opens on it (the 303 kept its ?market=)
        link = await page.context.new_page()
        await link.goto(f"{dashboard.url}/?token={dashboard.token}&market=nyc")
        await expect(link.locator("#market-name")).to_have_text("New York", timeout=10_000)
        assert link.url == f"{dashboard.url}/?market=nyc"
    finally:
        assert dashboard.stop() == 0


async def test_badge_shows_reconnecting_then_live_after_a_dashboard_restart(
    page: Page, dashboard: DashboardProcess, redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")
    badge = page.locator("#conn-badge")
    await expect(badge).to_contain_text("live", timeout=10_000)
    await page.evaluate("window.__sameDocument = true")
    dashboard.kill()
    await expect(badge).to_contain_text("reconnecting", timeout=5000)
    await expect(badge).to_have_attribute("data-state", "reconnecting")
    await RideWriter(redis, keys, "ride-after", (37.77, -122.42), (37.78, -122.41)).step(
        "requested"
    )
    await dashboard.start()
    await expect(badge).to_contain_text("live", timeout=15_000)
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    await _status(
        page, "ride-after", "requested"
    )  # the new process's snapshot replaced the old state
    assert dashboard.stop() == 0, "SIGTERM with a browser connected: a clean exit"
    await expect(badge).to_contain_text("reconnecting", timeout=5000)


async def test_a_basemap_that_failed_to_load_comes_with_the_next_connection(
    page: Page, dashboard: DashboardProcess
) -> None:
    """A base map request that fails (the dashboard going away mid-load) throws nothing on the
    page (the fixture fails on any page error) and is asked again after the reconnect."""
    failed: list[str] = []

    async def fail_the_first(route: Route) -> None:
        if failed:
            await route.continue_()
        else:
            failed.append(route.request.url)
            await route.abort("connectionfailed")

    await page.route("**/basemap.geojson*", fail_the_first)
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")
    badge = page.locator("#conn-badge")
    await expect(badge).to_contain_text("live", timeout=10_000)
    await expect(page.locator(".sector-label")).to_have_count(0)
    assert failed, "the first base map request was not seen"
    dashboard.kill()
    await expect(badge).to_contain_text("reconnecting", timeout=5000)
    await dashboard.start()
    await expect(badge).to_contain_text("live", timeout=15_000)
    await expect(page.locator(".sector-label").first).to_be_attached(timeout=10_000)
    assert dashboard.stop() == 0


async def test_page_without_a_token_says_how_to_get_one(
    page: Page, dashboard: DashboardProcess
) -> None:
    await page.goto(f"{dashboard.url}/")
    await expect(page.locator("#conn-badge")).to_have_attribute(
        "data-state", "unauthorized", timeout=10_000
    )
    await expect(page.locator("#notice")).to_contain_text("dashboard token")
    await expect(page.locator("#notice")).to_contain_text("open a fresh dashboard link")


# Counts the feed sockets the page opens (a refused page that retried showed only in this).
COUNT_SOCKETS = """
window.__sockets = 0;
const PageWebSocket = window.WebSocket;
window.WebSocket = class extends PageWebSocket {
  constructor(...args) { super(...args); window.__sockets += 1; }
};
"""


async def test_a_refusal_a_fresh_link_cannot_cure_says_why_and_is_not_retried(
    page: Page, dashboard: DashboardProcess
) -> None:
    """A market this dashboard does not serve is refused with 1008 like a missing token was:
    the page told the viewer to open a fresh link and retried every 5 s for ever. It shows the
    server's reason instead, and waits (60 s of the page's clock, run in a moment)."""
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")  # the session cookie
    await expect(page.locator("#conn-badge")).to_contain_text("live", timeout=10_000)
    await page.add_init_script(COUNT_SOCKETS)
    await page.clock.install()
    await page.goto(f"{dashboard.url}/?market=paris")
    await expect(page.locator("#conn-badge")).to_have_attribute(
        "data-state", "refused", timeout=10_000
    )
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("this dashboard serves no market 'paris'")
    await expect(notice).not_to_contain_text("fresh dashboard link")
    await page.clock.run_for(60_000)  # every retry the page would schedule, at its backoff
    assert await page.evaluate("window.__sockets") == 1, "the page retried a refused market"
    await expect(page.locator("#conn-badge")).to_have_attribute("data-state", "refused")


async def test_page_applies_deltas_exactly_like_the_server(
    page: Page, dashboard: DashboardProcess
) -> None:
    """feed.js decode and applyDelta mirror dashboard/protocol.py: the frames as sent give the
    same snapshots after any deltas."""
    state = CityState(
        {"id": "sf", "name": "San Francisco"},
        FeedConfig(
            event_log_size=25, series_points=12, client_queue_size=10_000, finished_ride_ttl_ms=4000
        ),
        stale_after_ms=1500,
    )
    hub = Hub(state, state.config)
    city = RandomCity(seed=99)
    client = hub.connect()
    texts: list[str] = []  # the frames as sent: the page decodes them itself
    for _ in range(300):
        for _ in range(city.rng.randint(0, 4)):
            city.step(state)
        hub.tick()
        while not client.queue.empty():
            texts.extend(client.queue.get_nowait())
    first, deltas = texts[0], texts[1:]
    expected = decode(first)
    for delta in deltas:
        expected = apply_delta(expected, decode(delta))
    await page.goto(f"{dashboard.url}/static/index.html?token={dashboard.token}")
    result = await page.evaluate(
        """async ([first, deltas]) => {
             const feed = await import('/static/feed.js');
             const state = feed.fromSnapshot(feed.decode(first));
             for (const delta of deltas) feed.applyDelta(state, feed.decode(delta));
             return feed.toSnapshot(state);
           }""",
        [first, deltas],
    )
    assert len(deltas) > 100
    assert result == expected


async def test_screenshot_of_a_busy_city(
    browser: Browser, redis: aioredis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """A seeded synthetic city renders in full (kept in tmp: the README's screenshot is of the
    real platform, see test_dashboard_screenshot.py)."""
    sim = CitySim(redis, settings.key_prefix, seed=7)
    await sim.seed(drivers=200, rides=30)  # before the dashboard starts: no burst in the charts
    dashboard = DashboardProcess(settings, tmp_path)
    await dashboard.start()
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(f"{dashboard.url}/?token={dashboard.token}")
        await expect(page.locator("#conn-badge")).to_contain_text("live", timeout=10_000)

        async def city_clock() -> None:
            while True:
                await sim.tick()
                await asyncio.sleep(1)  # one tick per second of chart

        clock = asyncio.create_task(city_clock())
        try:
            await page.wait_for_function(
                "() => (window.ridepulse.state?.series.t.length ?? 0) >= 14", timeout=30_000
            )
            await expect(page.locator("#map")).to_have_attribute("data-drivers", "200")
            target = tmp_path / "dashboard.png"
            await page.screenshot(path=str(target))
        finally:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
    finally:
        await context.close()
        dashboard.stop()
    assert target.stat().st_size > 50_000
