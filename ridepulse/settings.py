"""One typed settings object for every process; env prefix RIDEPULSE_ (see the README table)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ridepulse.logs import LogFormat
from ridepulse.redis_url import url_problem
from ridepulse.scale import parse_scale
from ridepulse.telemetry_groups import MATCHING_GEO, parse_shed_groups

KEY_PREFIX_FORBIDDEN = ":{}*?[]\\"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# An HS256 key shorter than its 32-byte hash is below what RFC 7518 asks and PyJWT warns about;
# the generated one has 64 characters
MIN_SECRET_CHARS = 32
# Sweep intervals past which the janitor's own pause means nobody was hearing drivers (it was
# down, or Redis unreachable or frozen: ridepulse/heard_until.py). Wide enough that one slow
# pass is not mistaken for one.
UNHEARD_AFTER_SWEEPS = 3
DRIVER_STALE_S = 30.0  # the default silence after which a driver is not offered (RideStore's too)


class Settings(BaseSettings):
    """Defaults work on a laptop: no Redis URL means the embedded server."""

    # an empty variable (`RIDEPULSE_DATA_DIR=`) is unset, not "": that put the data in the
    # current directory instead of .ridepulse. No float may be infinite (`inf`, `1e309`): it
    # passed gt=0 and broke a service once started (a heartbeat TTL of inf s raised
    # OverflowError; a ride deadline of inf s got every ride request a 422)
    model_config = SettingsConfigDict(
        env_prefix="RIDEPULSE_", extra="ignore", env_ignore_empty=True, allow_inf_nan=False
    )

    redis_url: str | None = Field(None, description="Redis/Valkey URL; unset = embedded server")
    data_dir: Path = Field(Path(".ridepulse"), description="embedded server data, secret, logs")
    key_prefix: str = Field(
        "rp",
        description="prefix of every Redis key (tests use their own); no spaces, :, braces or "
        "glob characters (_plain_prefix)",
    )
    markets_file: Path | None = Field(
        None, description="JSON file of markets; unset = built-in (sf, nyc)"
    )
    markets: str | None = Field(
        None, description="markets this deployment runs: unset = the first (sf), all, or sf,nyc"
    )
    host: str = Field("127.0.0.1", description="address the HTTP services bind")
    api_port: int = Field(8000, ge=1, le=65535, description="ingest API port")
    dashboard_port: int = Field(8080, ge=1, le=65535, description="dashboard port")
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="proxies whose X-Forwarded-Proto/-For the HTTP services believe, and the "
        "dashboard its X-Forwarded-Host (comma-separated addresses or networks, * = any): the "
        "TLS proxy in front, so the dashboard cookie gets Secure and the feed admits its origin",
    )
    http_head_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="time a client has to send a request, head and body (from connecting, or "
        "from the last response on a kept-alive connection); past it 408 and the connection closed",
    )
    ws_ping_s: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="the HTTP services ping each open WebSocket this often and close one whose "
        "pong has not come within as long: a vanished peer's socket is freed within twice this",
    )
    secret: str | None = Field(
        None,
        description="HS256 signing secret, 32 characters at least; unset = read from (or made "
        "once in) <data dir>/secret",
    )
    auth_enabled: bool = Field(
        True, description="require a link or session on the dashboard (the API always needs tokens)"
    )
    consumer_name: str | None = Field(None, description="stable consumer name of this replica")
    leases: bool = Field(
        False,
        description="pricing and eta: own markets by lease (ridepulse.leases) so N replicas split "
        "them; off = one replica owns every market",
    )
    lease_ttl_ms: int = Field(5000, gt=0, description="how long a market lease lasts unrenewed")
    scale: str | None = Field(
        None, description="ridepulse up: replicas per service, e.g. pricing=2,matching=2"
    )
    log_level: str = Field("info", description="debug, info, warning, error")
    log_format: LogFormat = Field(
        "auto", description="auto (console on a terminal, else JSON), json, console"
    )
    redis_max_connections: int = Field(64, ge=1, description="connection pool size per process")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus port for consumers without HTTP; 0 = off"
    )

    read_count: int = Field(500, ge=1, description="entries per XREADGROUP")
    telemetry_read_count: int = Field(
        3, ge=1, description="entries per XREADGROUP on telemetry (each up to 2,000 pings)"
    )
    telemetry_conflate: bool = Field(
        True,
        description="telemetry consumers behind by more than telemetry_catch_up_lag_s skip pings "
        "superseded within a read (latest wins)",
    )
    telemetry_catch_up_lag_s: float = Field(
        0.5,
        ge=0,
        description="lag in seconds past which a telemetry consumer reads bigger slices (and "
        "conflates); 0 = always",
    )
    telemetry_catch_up_read_count: int = Field(
        50, ge=1, description="fewest entries per XREADGROUP on telemetry while catching up"
    )
    telemetry_catch_up_max_read_count: int = Field(
        200,
        ge=1,
        description="most entries per XREADGROUP on telemetry while catching up (the read spans "
        "the backlog up to this, so a driver's superseded pings meet its newest)",
    )
    eta_conflation_window_ms: int = Field(
        15_000,
        ge=0,
        description="per driver, eta keeps the pings this close to its newest one; 0 = the newest",
    )
    eta_learn_interval_ms: int = Field(
        1_500,
        ge=0,
        description="eta learns from at most one ping per driver per this long; 0 = all",
    )
    telemetry_nice: int = Field(
        10, ge=0, le=19, description="niceness of telemetry-only processes under `up`; 0 = off"
    )
    read_linger_ms: int = Field(
        50,
        ge=0,
        description="consumers off the offer path (eta's and pricing's ride groups, the "
        "dashboard) pause this long after a read that did not fill up, so each read carries "
        "several events; 0 = read back to back",
    )
    block_ms: int = Field(
        1000,
        ge=1,
        description="XREADGROUP BLOCK (0 would block for ever); below the socket timeout",
    )
    claim_idle_ms: int = Field(
        15000,
        ge=0,
        description="idle time before another consumer claims; 0 = at once, even entries a live "
        "consumer is still handling (for tests)",
    )
    retry_idle_ms: int = Field(
        500,
        ge=0,
        description="idle time before a failed entry is retried (doubling per delivery, up to "
        "claim_idle_ms); 0 = at once",
    )
    max_deliveries: int = Field(5, ge=1, description="deliveries before an entry is dead-lettered")
    consumer_reap_idle_ms: int = Field(
        3_600_000,
        ge=1,
        description="idle time after which a consumer with nothing pending is removed",
    )
    heartbeat_interval_s: float = Field(2.0, gt=0, description="service heartbeat period")
    telemetry_maxlen: int = Field(
        100_000, ge=1, description="approximate cap of a telemetry stream"
    )
    telemetry_retention_s: float = Field(
        30.0, gt=0, description="telemetry older than this is trimmed (as old as a stale driver)"
    )
    ride_stream_trim_interval_s: float = Field(30.0, gt=0, description="group-aware trim period")
    ride_stream_retention_s: float = Field(
        3600.0, gt=0, description="ride events kept at least this long"
    )

    offer_timeout_s: float = Field(10.0, gt=0, description="a driver's time to answer an offer")
    matching_concurrency: int = Field(
        32, ge=1, description="rides one matching process offers at once"
    )
    matching_read_linger_ms: int = Field(
        0,
        ge=0,
        description="matching's pause after a read that did not fill up (see read_linger_ms)",
    )
    matching_batches_in_flight: int = Field(
        4, ge=1, description="reads of the ride stream matching works on at once (1: one by one)"
    )
    geo_batches_in_flight: int = Field(
        2,
        ge=1,
        description="telemetry reads matching-geo works on at once: one batch's Python overlaps "
        "the other's script in Valkey (1: one by one)",
    )
    match_batch_window_s: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="batch matching: collect waiting rides this long, then offer the "
        "min-total-pickup-ETA assignment; 0 offers each ride greedily as it arrives",
    )
    ride_deadline_s: float = Field(60.0, gt=0, description="time to find a driver before expiry")
    driver_stale_s: float = Field(
        DRIVER_STALE_S,
        gt=0,
        description="silence after which a driver is not offered, quoted or counted as supply",
    )
    geo_min_move_m: float = Field(
        20.0,
        ge=0,
        description="matching-geo writes a driver's ping only if it moved this far since the "
        "last one written, or a third of driver_stale_s passed; 0 writes every ping",
    )
    driver_lost_s: float = Field(
        120.0,
        gt=0,
        description="silence after which a driver's ride is re-offered (before pickup) or "
        "cancelled (on trip) and the driver set offline",
    )
    driver_evict_s: float = Field(
        600.0, gt=0, description="silence after which a driver is forgotten (hash, position)"
    )
    driver_sweep_interval_s: float = Field(
        5.0, gt=0, description="how often the janitor looks for lost and departed drivers"
    )
    rider_rides_kept: int = Field(
        50, ge=1, description="finished rides kept in a rider's ride set (open ones always)"
    )
    heartbeat_prune_intervals: int = Field(
        30, ge=3, description="heartbeat periods a gone consumer stays listed before removal"
    )
    retention_interval_s: float = Field(
        60.0, gt=0, description="how often rider ride sets and the heartbeat set are trimmed"
    )
    h3_resolution: int = Field(
        8, ge=0, le=15, description="H3 resolution of surge and speed cells (0 the coarsest)"
    )
    surge_cap: float = Field(3.0, ge=1.0, description="highest surge multiplier; 1 turns surge off")
    surge_neighbour_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="share of a cell's demand and supply its neighbours count"
    )
    surge_min_change: float = Field(
        0.2, gt=0.0, description="smallest change of a published multiplier (hysteresis)"
    )
    telemetry_shed_lag_s: float = Field(
        1.0, gt=0, description="seconds a dispatch group may trail telemetry before pings get 429"
    )
    telemetry_shed_check_s: float = Field(
        0.25, gt=0.0, le=10.0, description="how often ingest measures the shedding groups' lag"
    )
    telemetry_shed_groups: str = Field(
        MATCHING_GEO,
        description="comma-separated telemetry groups whose lag sheds pings (matching.geo, "
        "eta.speeds)",
    )
    max_batch_pings: int = Field(5000, ge=1, description="most pings in one POST /v1/telemetry")
    ping_rate_per_s: float = Field(5.0, gt=0, description="sustained pings/s allowed per driver")
    ping_burst: float = Field(20.0, ge=1, description="ping burst allowed per driver")
    durable_writes: bool = Field(
        True, description="a ride's 202 waits for its AOF fsync (WAITAOF); false = memory only"
    )
    durable_timeout_ms: int = Field(
        2000, gt=0, description="longest wait for that fsync before a 503 with Retry-After"
    )
    ride_replica_acks: int = Field(
        0,
        ge=0,
        le=1,
        description="1 = a ride's 202 also waits for a replica (WAIT 1): survives a failover; "
        "0 = the local AOF's fsync only",
    )
    rider_ride_requests_per_min: int = Field(
        10, ge=0, description="ride requests per rider and market per minute; 0 = off"
    )
    rider_quotes_per_min: int = Field(
        30, ge=0, description="quotes per rider and market per minute; 0 = off"
    )
    rider_cancels_per_min: int = Field(
        10, ge=0, description="cancels per rider and market per minute; 0 = off"
    )
    rider_open_rides: int = Field(
        1, ge=0, description="rides a rider may have open at once; 0 = off"
    )
    driver_ws_per_token: int = Field(
        2, ge=0, description="driver WebSockets open at once per token, per ingest process; 0 = off"
    )
    dashboard_ws_per_token: int = Field(
        20,
        ge=0,
        description="dashboard feed WebSockets open at once per link (the link and every "
        "session opened from it), per dashboard process; 0 = off. 20: ten viewers of one link, "
        "each with a reconnect whose old socket is not yet seen closed; 100 links then fill the "
        "2,000 clients one process was measured at",
    )
    surge_window_s: float = Field(300.0, gt=0, description="surge demand and supply window")
    surge_interval_s: float = Field(2.0, gt=0, description="how often pricing recomputes surge")

    @field_validator("redis_url")
    @classmethod
    def _usable_url(cls, url: str | None) -> str | None:
        """Refused here, by every command, not as a traceback from the first connection a
        service makes (ridepulse/redis_url.py)."""
        if url and (problem := url_problem(url)):
            raise ValueError(problem)
        return url

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, secret: str | None) -> str | None:
        """A short key is guessable offline from one token; blanks only would sign with ''."""
        if secret and len(secret.strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"{MIN_SECRET_CHARS} characters at least (not counting blanks)")
        return secret

    @field_validator("driver_sweep_interval_s")
    @classmethod
    def _outage_seen_before_loss(cls, interval_s: float, info: ValidationInfo) -> float:
        """The janitor takes a pause of UNHEARD_AFTER_SWEEPS sweeps for an outage, which is
        not the drivers' silence; a pause that long but shorter than driver_lost_s is the only
        kind it can tell from silence, so the two must leave room for it."""
        lost_s = info.data.get("driver_lost_s")
        if lost_s is not None and interval_s * UNHEARD_AFTER_SWEEPS >= lost_s:
            raise ValueError(
                f"{UNHEARD_AFTER_SWEEPS} sweeps must be shorter than driver_lost_s ({lost_s:g} s): "
                "a longer pause is how the janitor tells the platform's outage from silence"
            )
        return interval_s

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, scale: str | None) -> str | None:
        """Checked with the other settings, from the flag or the environment alike: the
        launcher reads it only once Redis (or a whole cluster) is up."""
        parse_scale(scale)
        return scale

    @field_validator("telemetry_shed_groups")
    @classmethod
    def _known_shed_groups(cls, groups: str) -> str:
        """A misspelt group measured nothing: no shedding, and no janitor guard on its lag."""
        parse_shed_groups(groups)
        return groups

    @field_validator("key_prefix")
    @classmethod
    def _plain_prefix(cls, prefix: str) -> str:
        """Braces would move keys off their market's hash slot; glob characters would widen the
        ACL key patterns built from the prefix (ridepulse/acl.py)."""
        if not prefix or any(c.isspace() or c in KEY_PREFIX_FORBIDDEN for c in prefix):
            raise ValueError(f"not empty, and no spaces or any of {KEY_PREFIX_FORBIDDEN}")
        return prefix

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
        return level.lower()
