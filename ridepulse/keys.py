"""Every Redis key name, built in one place. The market is the hash tag: all keys one atomic
step touches share `{market}`, so the same scripts run on one Redis and on Redis Cluster, and
every key a market's request touches (ride request, quote, ride read and actions, ping) is in
that market's slot: on a cluster a market's requests never wait on another market's shard
(tests/integration/test_market_request_keys.py). GlobalKeys are the few keys no request waits on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MarketKeys:
    """Keys of one market; `prefix` isolates deployments and tests."""

    market: str
    prefix: str = "rp"

    @property
    def _base(self) -> str:
        return f"{self.prefix}:{{{self.market}}}"

    # streams
    @property
    def telemetry(self) -> str:
        return f"{self._base}:telemetry"

    @property
    def rides(self) -> str:
        return f"{self._base}:rides"

    @property
    def surge_events(self) -> str:
        return f"{self._base}:surge"

    @property
    def eta_events(self) -> str:
        return f"{self._base}:eta"

    # projections and read models
    def ride(self, ride_id: str) -> str:
        return f"{self._base}:ride:{ride_id}"

    def driver(self, driver_id: str) -> str:
        return f"{self._base}:driver:{driver_id}"

    @property
    def drivers_geo(self) -> str:
        """GEO set of available drivers (matching's index)."""
        return f"{self._base}:drivers:geo"

    @property
    def drivers_seen(self) -> str:
        """ZSET driver → last ping ms, for staleness."""
        return f"{self._base}:drivers:seen"

    @property
    def drivers_heard_until(self) -> str:
        """STRING ms: the janitor's last pass, when the platform last showed it could hear."""
        return f"{self._base}:drivers:heard"

    @property
    def drivers_unheard(self) -> str:
        """ZSET "start:end" → end ms: stretches no driver could be heard (down, cut off)."""
        return f"{self._base}:drivers:unheard"

    @property
    def positions(self) -> str:
        """HASH driver → packed last position, for reads and the dashboard."""
        return f"{self._base}:drivers:pos"

    @property
    def driver_statuses(self) -> str:
        """HASH driver → status, kept in step with each driver hash by the ride scripts."""
        return f"{self._base}:drivers:status"

    @property
    def ride_counts(self) -> str:
        """HASH status → number of rides that reached it (dashboard KPIs)."""
        return f"{self._base}:rides:counts"

    @property
    def open_rides(self) -> str:
        """ZSET ride → deadline ms, of rides waiting for a driver."""
        return f"{self._base}:rides:open"

    @property
    def offer_timeouts(self) -> str:
        """ZSET ride → offer expiry ms."""
        return f"{self._base}:offers:due"

    @property
    def active_rides(self) -> str:
        """ZSET ride → requested_at ms, of rides not yet in a terminal state."""
        return f"{self._base}:rides:active"

    def idempotency(self, rider_id: str, key: str) -> str:
        """HASH of the ride a rider's Idempotency-Key made. Both parts may hold `:`, so the rider
        id carries its length: rider `r:x` with key `k` and rider `r` with key `x:k` would
        otherwise name one record (tests/e2e/test_rider_contracts.py)."""
        return f"{self._base}:idem:{len(rider_id)}:{rider_id}:{key}"

    def rider_rides(self, rider_id: str) -> str:
        return f"{self._base}:rider:{rider_id}:rides"

    def rider_open_rides(self, rider_id: str) -> str:
        """SET of the rider's rides not yet terminal in this market (the open-rides limit counts
        it), pruned by each request and by the janitor (ridepulse/retention.py)."""
        return f"{self._base}:rider:{rider_id}:open"

    @property
    def surge(self) -> str:
        """HASH H3 cell → surge multiplier (pricing's read model)."""
        return f"{self._base}:surge:cells"

    @property
    def speeds(self) -> str:
        """HASH H3 cell → learned speed m/s (eta's read model)."""
        return f"{self._base}:eta:speeds"

    def quote(self, quote_id: str) -> str:
        return f"{self._base}:quote:{quote_id}"

    def ride_applied(self, ride_id: str) -> str:
        """SET of event ids already applied to a ride (24 h TTL): a redelivered step is a no-op."""
        return f"{self._base}:applied:ride:{ride_id}"

    def rider_rate(self, rider_id: str, action: str, window: int) -> str:
        """The rider's fixed-window request counter in this market (one key per minute, expires
        with it): the limits are per rider and market, so a request never leaves its shard."""
        return f"{self._base}:rate:rider:{rider_id}:{action}:{window}"

    def driver_home(self, driver_id: str) -> str:
        """When (ms) ingest last recorded that the driver pings from this market
        (ingest.driver_homes), with several markets: the newest record across markets wins."""
        return f"{self._base}:driver-home:{driver_id}"


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    """The few keys that belong to no market: bookkeeping no request waits on (docs/scaling.md)."""

    prefix: str = "rp"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def health(self) -> str:
        """Stream of service.heartbeat events (dashboard, status)."""
        return f"{self.prefix}:health"

    def heartbeat(self, service: str, consumer: str) -> str:
        return f"{self.prefix}:heartbeat:{service}:{consumer}"

    @property
    def heartbeats(self) -> str:
        """SET of heartbeat keys, so status finds them without SCAN."""
        return f"{self.prefix}:heartbeats"


def heartbeat_owner(key: str) -> tuple[str, str]:
    """(service, consumer) of a heartbeat key `<prefix>:heartbeat:<service>:<consumer>`: the
    inverse of `GlobalKeys.heartbeat`."""
    service, _, consumer = key.partition(":heartbeat:")[2].partition(":")
    return service, consumer
