"""What the routes need, built once in the app's lifespan: no import-time connections."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import Request

from ingest.admission import TelemetryAdmission
from ingest.batcher import TelemetryBatcher
from ingest.driver_homes import DriverHomes
from ingest.market_moves import MarketMoves
from ingest.ratelimit import PingRateLimiter, limit_rider
from ingest.write_refusal_watch import WriteRefusalWatch
from ridepulse.auth import Principal, bearer, verify_token
from ridepulse.background import Background
from ridepulse.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedEncoding
from ridepulse.keys import MarketKeys
from ridepulse.markets import Market, MarketMap
from ridepulse.rides.ids import market_of_ride
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings

TOKEN_CACHE_SIZE = 50_000
TOKEN_SWEEP_EVERY_S = 30.0
# A verified token is trusted from the cache this long at most, then verified again (about
# 30 us): the cache holds the tokens of recent callers only, not every token of the last
# 12 hours, so with driver ids coming and going ingest's memory levels off (docs/reliability.md).
TOKEN_CACHE_TTL_S = 60.0
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass
class Deps:
    settings: Settings
    redis: aioredis.Redis
    markets: MarketMap
    secret: str
    batcher: TelemetryBatcher
    limiter: PingRateLimiter
    stores: dict[str, RideStore]
    source: str
    notifier: Any = None
    background: Background | None = None  # the lifespan's loops: heartbeat, notifier, shedding
    homes: DriverHomes | None = None  # each driver's market, with several markets
    moves: MarketMoves | None = None  # takes a driver out of its old market, with several
    refusals: WriteRefusalWatch | None = None  # whether Redis refuses writes: /readyz
    admission: TelemetryAdmission = field(default_factory=TelemetryAdmission)
    shed_retry_after_s: int = 1
    # batches validated and appended at once, a bound on the telemetry CPU queued in front of
    # ride requests. Not fewer: each batch holds its slot until the group commit carrying it
    # returns, so the slots cap ingest at that many batches per XADD round trip. Two did, at
    # ~120,000 pings/s: past it requests queued at the door for seconds, unseen by shedding
    # (which watches the consumers), while the consumers looked fine.
    batch_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    _tokens: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _next_token_sweep: float = 0.0

    @property
    def durable_writes(self) -> bool:
        """A 202 on a ride request waits for the AOF fsync (ingest.durability)."""
        return self.settings.durable_writes

    def keys(self, market_id: str) -> MarketKeys:
        return MarketKeys(market_id, self.settings.key_prefix)

    def market_of_ride(self, ride_id: str) -> Market:
        """Ride ids carry their market (ridepulse.rides.ids), so a read needs no global index."""
        market_id = market_of_ride(ride_id)
        if market_id is None or market_id not in self.markets.by_id:
            raise NotFound(f"ride {ride_id} not found")
        return self.markets.get(market_id)

    def store_for_ride(self, ride_id: str) -> RideStore:
        return self.stores[self.market_of_ride(ride_id).id]

    async def limit_rider(self, who: Principal, market_id: str, action: str, per_min: int) -> None:
        """A rider's per-minute limit of `action` in the market (429 past it), counted in the
        market's slot like the rest of the request; ops and drivers are not limited here."""
        if who.role == "rider":
            await limit_rider(self.redis, self.keys(market_id), who.subject, action, per_min)

    def authenticate(self, header: str | None) -> Principal:
        """Verify an `api`-audience bearer token (dashboard tokens get 401); verified tokens
        are cached for TOKEN_CACHE_TTL_S or until they expire, whichever is first (HS256
        verify is on the hot path)."""
        token = bearer(header)
        now = time.time()
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = verify_token(self.secret, token, audience="api")
        if now >= self._next_token_sweep:  # stale entries go: the cache holds recent callers only
            self._tokens = {t: entry for t, entry in self._tokens.items() if entry[1] > now}
            self._next_token_sweep = now + TOKEN_SWEEP_EVERY_S
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[token] = (principal, min(principal.expires_at, now + TOKEN_CACHE_TTL_S))
        return principal


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


async def principal(request: Request) -> Principal:
    # async although it never awaits: FastAPI runs a plain `def` dependency in its thread pool,
    # a hand-off (and a wake-up of the loop) on every request for a check that is a dict lookup
    return get_deps(request).authenticate(request.headers.get("authorization"))


async def body_bytes(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused as soon as it passes `limit`: a chunked body declares no length, and
    reading it whole first let one token make ingest hold hundreds of MB. A body in any
    Content-Encoding but identity is refused: read as sent, gzip was a 422 "not valid JSON" and
    a plain body labelled br was taken."""
    coding = request.headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding {coding!r} is not supported: send the body uncompressed"
        )
    too_large = PayloadTooLarge(f"body larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    request._body = raw  # as Request.body() keeps it, for anything that reads it again
    return raw


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("body is not valid JSON") from None


async def json_body(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    return parse_json(await body_bytes(request, limit))
