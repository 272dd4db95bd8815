"""The feed of one dashboard process: state, reader, sampler and hub, and the tasks that
drive them."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.config import FeedConfig
from dashboard.hub import Hub
from dashboard.loops import REDIS_ERRORS, every
from dashboard.reader import FeedReader
from dashboard.ride_view import ride_from_hash, text_hash
from dashboard.sampler import Sampler
from dashboard.state import CityState
from ridepulse.contracts.envelope import now_ms
from ridepulse.errors import NotFound
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.logs import get_logger
from ridepulse.markets import Market, load_markets
from ridepulse.pause import sleep_or_stop
from ridepulse.redis_client import request_socket_timeout_s
from ridepulse.settings import Settings

RIDE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def market_info(
    market: Market, settings: Settings, served: list[Market] | None = None
) -> dict[str, Any]:
    """What the page needs of its market, and the markets this dashboard serves (the page's
    market switch)."""
    bbox = market.bbox
    return {
        "id": market.id,
        "name": market.name,
        "markets": [{"id": m.id, "name": m.name} for m in (served or [market])],
        "bbox": {
            "min_lat": bbox.min_lat,
            "min_lon": bbox.min_lon,
            "max_lat": bbox.max_lat,
            "max_lon": bbox.max_lon,
        },
        "center": {"lat": market.center.lat, "lon": market.center.lon},
        "h3_resolution": settings.h3_resolution,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
    }


def served_markets(settings: Settings) -> list[Market]:
    """The markets of this deployment (RIDEPULSE_MARKETS), the default first."""
    markets = load_markets(settings.markets_file, settings.markets)
    return [markets.default, *(m for m in markets.by_id.values() if m is not markets.default)]


def pick_feed(app_state: Any, market_id: str | None) -> Feed:
    """The feed of `market_id` (`?market=`), or the default market's when none is named;
    NotFound (404, field `market`) for a market this dashboard does not serve."""
    if not market_id:
        feed: Feed = app_state.feed
        return feed
    feeds: dict[str, Feed] = app_state.feeds
    if market_id not in feeds:
        raise NotFound(f"this dashboard serves no market {market_id!r}", field="market")
    return feeds[market_id]


class Feed:
    """One market's live city: its own state, stream reader, sampler and hub. A dashboard
    process runs one per market it serves; a browser follows one at a time (`?market=`)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        config: FeedConfig | None = None,
        market: Market | None = None,
        served: list[Market] | None = None,
    ) -> None:
        self.redis = redis
        # the client is the stream reader's too, its socket timeout above a blocked read (11 s):
        # a request's read gets a deadline of its own, so a frozen server fails it in seconds
        self._request_timeout_s = request_socket_timeout_s(settings)
        self.config = config or FeedConfig()
        self.market = market or load_markets(settings.markets_file, settings.markets).default
        self.keys = MarketKeys(self.market.id, settings.key_prefix)
        stale_after_ms = int(3 * settings.heartbeat_interval_s * 1000)
        self.state = CityState(
            market_info(self.market, settings, served), self.config, stale_after_ms=stale_after_ms
        )
        self.hub = Hub(self.state, self.config)
        global_keys = GlobalKeys(settings.key_prefix)
        self.reader = FeedReader(
            redis, self.state, self.keys, global_keys, self.config, block_ms=settings.block_ms
        )
        self.sampler = Sampler(redis, self.state, self.keys, global_keys)
        # a pause between stream reads: a delta goes out per tick anyway, and a reader woken by
        # every ride event re-reads a ride hash per event where one read per batch would do
        self._stream_pause_s = settings.read_linger_ms / 1000
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.log = get_logger(component="feed")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._tick())]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        await self._load()
        config, reader, sampler, stop = self.config, self.reader, self.sampler, self._stop
        await asyncio.gather(
            every("streams", self._stream_pause_s, reader.read_streams, stop),
            every("health", 0, reader.read_health, stop),
            every("drivers", self._driver_sample_s, sampler.drivers, stop, self.hub.watched),
            every("metrics", config.metrics_sample_s, sampler.metrics, stop),
            every("reconcile", config.reconcile_s, reader.reconcile, stop),
        )

    def _driver_sample_s(self) -> float:
        return self.config.driver_sample_s if self.hub.clients else self.config.idle_driver_sample_s

    async def _load(self) -> None:
        """The initial state, retried until Redis answers (clients meanwhile see an empty city)."""
        pause_s = 0.2
        while not self._stop.is_set():
            try:
                await self.reader.load()
                await self.sampler.drivers()
                await self.sampler.metrics()
            except REDIS_ERRORS as exc:
                self.log.warning("feed.load_failed", error=str(exc))
                await sleep_or_stop(self._stop, pause_s)
                pause_s = min(pause_s * 2, 5.0)
                continue
            state = self.state
            self.log.info("feed.loaded", rides=len(state.rides), drivers=len(state.drivers))
            return

    async def _tick(self) -> None:
        """At most one delta per tick, on a fixed cadence (slower with many clients)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            self.state.maybe_refresh(now_ms(), least_ms=int(self.config.kpi_refresh_s * 1000))
            self.hub.tick()
            next_at = max(next_at + self.hub.tick_interval_s(), loop.time())
            await sleep_or_stop(self._stop, next_at - loop.time())

    async def ride(self, ride_id: str) -> dict[str, Any] | None:
        """A ride's projection with its timeline, read now (any ride, not only the ones shown)."""
        if not RIDE_ID.match(ride_id):
            return None
        try:
            found = await asyncio.wait_for(
                self.redis.hgetall(self.keys.ride(ride_id)), self._request_timeout_s
            )
        except TimeoutError:
            # a redis error, so the shared handler answers it as every outage: 503 unavailable
            raise RedisTimeoutError("no reply within the request deadline") from None
        fields = text_hash(found)
        ride = ride_from_hash(fields)
        return None if ride is None else {**ride, "fields": fields}
