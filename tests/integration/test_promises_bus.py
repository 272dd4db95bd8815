"""Three documented promises of the bus and its services, each held to its words:

- docs/reliability.md, failure model: a server out of memory refuses writes, ingest answers 503
  and acknowledges nothing; the same Idempotency-Key succeeds once memory is back.
- docs/architecture.md (dead consumers) and docs/operations.md (`consumer.entries_lost`,
  `rp_entries_lost_total`): pending entries trimmed from the stream are counted as lost and
  acked by the consumer that claims them, so nothing stays pending.
- docs/architecture.md (Redis blips): start-up and warm-up retry Redis for 15 s, so a service
  started before its server becomes ready once the server is up, without a restart."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from loadtests.platform import clean_env
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.worker import START_PATIENCE_S
from ridepulse.contracts.registry import Event
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_client import connect, connect_sync
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.ingest import DOWNTOWN, Ingest, start
from tests.support.processes import run_service
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production-0123456789"
MISSION = {"lat": 37.7599, "lon": -122.4148}
TRIP = {"pickup": DOWNTOWN, "dropoff": MISSION}
DEFAULT_RIDER_LIMIT = Settings.model_fields["rider_ride_requests_per_min"].default


# ---- 1. out of memory: ingest refuses, acknowledges nothing, and the retry succeeds ------------


@asynccontextmanager
async def out_of_memory(redis: aioredis.Redis) -> AsyncIterator[None]:
    """Every write that could grow memory is refused (OOM) until the block ends."""
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", "1")
    try:
        yield
    finally:
        await redis.config_set("maxmemory", "0")


async def stored_state(redis: aioredis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key of this test's prefix, serialized (DUMP), except the liveness keys a service
    rewrites on its own (heartbeats, the health stream): any write to the rest shows here."""
    liveness = GlobalKeys(prefix)
    skipped = (liveness.health.encode(), liveness.heartbeats.encode())
    beats = f"{prefix}:heartbeat:".encode()
    state: dict[bytes, bytes] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        if key in skipped or key.startswith(beats):
            continue
        dumped: Any = await redis.dump(key)
        state[key] = dumped
    return state


def changed_keys(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> list[bytes]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what} under OOM: expected 503, got {response.text}"
    assert response.json()["error"] == "unavailable", response.text
    assert response.headers.get("Retry-After") == "1", dict(response.headers)


WHOLE_SCRIPT_REFUSED = "command not allowed when used memory"  # at its start (`#!lua`)


@pytest.mark.parametrize(
    ("rider_limit_per_min", "stale_open_ride", "refused_at"),
    [
        # the default: the rider limit's INCRBY is the request's first write
        pytest.param(DEFAULT_RIDER_LIMIT, False, "INCRBY", id="refused-at-the-rider-limit"),
        # the limit off (0): the ride script is refused before it runs
        pytest.param(0, False, WHOLE_SCRIPT_REFUSED, id="refused-at-the-ride-script"),
        # and so when its first write would be an SREM of the rider's finished ride, which a
        # full server allows: before ridepulse/rides/scripts.py's `#!lua`, a whole ride followed
        pytest.param(0, True, WHOLE_SCRIPT_REFUSED, id="with-a-finished-ride-to-prune"),
    ],
)
async def test_an_oom_server_refuses_rides_and_pings_with_503_and_the_same_key_succeeds_later(
    own_server: EmbeddedRedis,
    tmp_path: Path,
    rider_limit_per_min: int,
    stale_open_ride: bool,
    refused_at: str,
) -> None:
    """docs/reliability.md: "writes are refused: ingest answers 5xx/503 and the client
    retries" — "nothing acknowledged" — "as soon as memory is available again"."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        redis_url=own_server.url,
        key_prefix=prefix,
        data_dir=tmp_path,
        heartbeat_interval_s=0.5,
        secret=SECRET,
        rider_ride_requests_per_min=rider_limit_per_min,
    )
    keys = MarketKeys("sf", prefix)
    redis = connect(settings)
    try:
        with capture_logs() as logs:  # ingest binds its error logger when built
            async with start(settings) as ingest:
                # the market's streams and indexes exist before the fault, as on a live platform
                earlier = await ingest.request_ride("rider-0", TRIP, "before-the-fault")
                assert earlier.status_code == 202, earlier.text
                assert (await ingest.ping("d0", DOWNTOWN)).status_code == 202
                if stale_open_ride:  # still in rider-1's open set until its next request
                    await _request_and_cancel(ingest, "rider-1")
                newest: Any = await redis.xrevrange(keys.rides, count=1)
                last_id_before = newest[0][0].decode()
                before = await stored_state(redis, prefix)

                async with out_of_memory(redis):
                    refused = await ingest.request_ride("rider-1", TRIP, "trip-1")
                    assert_unavailable(refused, "POST /v1/rides")
                    assert_unavailable(
                        await ingest.ping("d1", DOWNTOWN), "POST /v1/drivers/d1/location"
                    )
                    assert_unavailable(
                        await ingest.batch([{"driver_id": d, **DOWNTOWN} for d in ("d2", "d3")]),
                        "POST /v1/telemetry",
                    )
                    after = await stored_state(redis, prefix)

                assert changed_keys(before, after) == [], "a refused request wrote something"
                assert await redis.exists(keys.idempotency("rider-1", "trip-1")) == 0
                ride_id = await _retry_succeeds_once(ingest, redis, keys, last_id_before)
                assert ride_id != earlier.json()["ride_id"]
                assert (await ingest.ping("d1", DOWNTOWN)).status_code == 202, (
                    "pings accepted again"
                )
    finally:
        await redis.config_set("maxmemory", "0")  # whatever failed above
        await redis.aclose()
    refusals = {e["path"]: e["error"] for e in logs if e["event"] == "api.redis_error"}
    assert set(refusals) == {"/v1/rides", "/v1/drivers/d1/location", "/v1/telemetry"}, refusals
    assert all(error.startswith("OutOfMemoryError") for error in refusals.values()), refusals
    assert refused_at in refusals["/v1/rides"], refusals["/v1/rides"]


async def _request_and_cancel(ingest: Ingest, rider: str) -> None:
    requested = await ingest.request_ride(rider, TRIP, "soon-cancelled")
    assert requested.status_code == 202, requested.text
    ride_id = requested.json()["ride_id"]
    cancel = await ingest.http.post(
        f"/v1/rides/{ride_id}/cancel", headers=ingest.auth("rider", rider)
    )
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled", cancel.text


async def _retry_succeeds_once(
    ingest: Ingest, redis: aioredis.Redis, keys: MarketKeys, last_id_before: str
) -> str:
    """The refused request sent again with its key: 202, one ride, one event; a replay after
    that names the same ride and adds nothing."""
    retried = await ingest.request_ride("rider-1", TRIP, "trip-1")
    assert retried.status_code == 202, f"the same key once memory is back: {retried.text}"
    assert retried.json()["status"] == "requested", retried.text
    ride_id: str = retried.json()["ride_id"]
    ride: Any = await redis.hgetall(keys.ride(ride_id))
    assert ride[b"status"] == b"requested" and ride[b"rider_id"] == b"rider-1", ride
    events: Any = await redis.xrange(keys.rides, min=f"({last_id_before}")
    assert [(f[b"type"], f[b"subject"]) for _, f in events] == [
        (b"ride.requested", f"ride/{ride_id}".encode())
    ], "exactly one event since the fault: the retried request's"

    again = await ingest.request_ride("rider-1", TRIP, "trip-1")
    assert again.status_code == 202 and again.json()["ride_id"] == ride_id, again.text
    events = await redis.xrange(keys.rides, min=f"({last_id_before}")
    assert len(events) == 1, "a replay adds no event"
    return ride_id


# ---- 2. entries trimmed while pending are counted lost and acked --------------------------------


async def _pending(redis: aioredis.Redis, stream: str, group: str) -> int:
    summary: Any = await redis.xpending(stream, group)
    return int(summary["pending"])


async def _trim_with_xtrim_minid(redis: aioredis.Redis, stream: str, ids: list[bytes]) -> None:
    # exact (redis-py defaults to `~`, which keeps a whole node): every entry before the last
    await redis.xtrim(stream, minid=ids[-1], approximate=False)


async def _trim_with_xdel(redis: aioredis.Redis, stream: str, ids: list[bytes]) -> None:
    await redis.xdel(stream, *ids[:-1])


Trim = Callable[[aioredis.Redis, str, list[bytes]], Awaitable[None]]


@pytest.mark.parametrize(
    "trim",
    [
        pytest.param(_trim_with_xtrim_minid, id="xtrim-minid"),
        pytest.param(_trim_with_xdel, id="xdel"),
    ],
)
@pytest.mark.parametrize(
    "claimer",
    [
        # another consumer of the group: XAUTOCLAIM once the entries idle past claim_idle_ms
        pytest.param("c1", id="claimed-by-another-consumer"),
        # the dead consumer's name restarted: XCLAIM of its own pending entries at start
        pytest.param("dead", id="reclaimed-by-its-restarted-name"),
    ],
)
async def test_entries_trimmed_while_pending_on_a_dead_consumer_are_counted_lost_and_acked(
    redis: aioredis.Redis, settings: Settings, trim: Trim, claimer: str
) -> None:
    """docs/architecture.md: "the ids XAUTOCLAIM reports as deleted (trimmed while pending) are
    counted as lost, logged and acked", and an id an XCLAIM does not return that "is gone from
    the stream" counts as lost; docs/operations.md: `consumer.entries_lost` in the logs,
    `rp_entries_lost_total` > 0."""
    keys = MarketKeys("sf", settings.key_prefix)
    group = f"lost-{uuid.uuid4().hex[:8]}"  # the metric is per group: this test's own
    events = expired_events(3)
    await fill(redis, keys.rides, events)
    await redis.xgroup_create(keys.rides, group, id="0")
    # a consumer reads all three and dies without acking any
    read: Any = await redis.xreadgroup(group, "dead", {keys.rides: ">"}, count=10)
    delivered_at = time.monotonic()
    ids: list[bytes] = [entry_id for entry_id, _ in read[0][1]]
    assert len(ids) == 3 and await _pending(redis, keys.rides, group) == 3
    await trim(redis, keys.rides, ids)
    assert await redis.xlen(keys.rides) == 1, "the two oldest are gone from the stream"

    handled: list[str] = []

    async def record(event: Event, deps: Any) -> None:
        handled.append(event.id)

    labels = {"service": "test", "group": group, "stream": keys.rides}
    lost_before = REGISTRY.get_sample_value("rp_entries_lost_total", labels) or 0.0
    with capture_logs() as logs:  # the runtime binds its logger when built
        consumer = runtime(
            redis,
            settings,
            HandlerTable(per_event={"ride.expired": record}),
            consumer=claimer,
            group=group,
        )
        await asyncio.wait_for(consumer.run(), 30)  # burst: returns once nothing is pending
    took_s = time.monotonic() - delivered_at

    assert consumer.stats.lost == 2, consumer.stats
    assert handled == [events[2].id], "the surviving entry is claimed and handled"
    if claimer != "dead":  # a live consumer's entries are not taken from it before then
        assert took_s >= settings.claim_idle_ms / 1000 * 0.9, f"claimed after {took_s:.2f}s"
    lost_after = REGISTRY.get_sample_value("rp_entries_lost_total", labels) or 0.0
    assert lost_after - lost_before == 2, (
        f"rp_entries_lost_total rose by {lost_after - lost_before}"
    )
    lost_logs = [e for e in logs if e["event"] == "consumer.entries_lost"]
    assert lost_logs, f"no consumer.entries_lost among {[e['event'] for e in logs]}"
    assert sum(e["count"] for e in lost_logs) == 2, lost_logs
    assert all(e["log_level"] == "error" and e["stream"] == keys.rides for e in lost_logs)
    assert await _pending(redis, keys.rides, group) == 0, "nothing stays pending"
    consumers: Any = await redis.xinfo_consumers(keys.rides, group)
    assert all(int(c["pending"]) == 0 for c in consumers), consumers


async def test_a_restarted_consumer_first_finishes_what_its_name_held_then_reads_new(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """docs/architecture.md (restart): "a consumer first re-processes its own pending entries,
    then reads new ones" — at once, not after claim_idle_ms as another consumer would."""
    keys = MarketKeys("sf", settings.key_prefix)
    group = f"restart-{uuid.uuid4().hex[:8]}"
    events = expired_events(4)
    await fill(redis, keys.rides, events[:2])
    await redis.xgroup_create(keys.rides, group, id="0")
    # the consumer read two entries and died before acking them; two more came meanwhile
    read: Any = await redis.xreadgroup(group, "c1", {keys.rides: ">"}, count=10)
    assert len(read[0][1]) == 2
    await fill(redis, keys.rides, events[2:])
    handled: list[str] = []

    async def record(event: Event, deps: Any) -> None:
        handled.append(event.id)

    patient = settings.model_copy(update={"claim_idle_ms": 60_000, "retry_idle_ms": 60_000})
    consumer = runtime(
        redis, patient, HandlerTable(per_event={"ride.expired": record}), consumer="c1", group=group
    )
    await asyncio.wait_for(consumer.run(), 10)  # far below either idle time
    assert handled == [e.id for e in events], "its own pending first, in order, then the new"
    assert await _pending(redis, keys.rides, group) == 0


# ---- 3. a service started before its Redis waits for it ---------------------------------------

OUTAGE_S = 3.0  # how long Redis stays away after the service first finds it missing


def _log_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().splitlines() if path.exists() else []
    events: list[dict[str, Any]] = []
    for line in lines:
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line that is not a structlog event (there should be none)
        if isinstance(parsed, dict):
            events.append(parsed)
    return events


def _retries(path: Path) -> list[dict[str, Any]]:
    return [e for e in _log_events(path) if str(e.get("event", "")).endswith(".redis_unavailable")]


@pytest.mark.slow  # a real process, a 3 s outage and the backoff after it: about 10 s each
@pytest.mark.parametrize(
    ("service", "phase", "group", "stream"),
    [
        # pricing warms up first (published surge, demand, supply): Redis is missing there
        pytest.param("pricing", "warm_up", "pricing", "rides", id="pricing-in-warm-up"),
        # matching-geo has no warm-up: groups and the first heartbeat are its start-up
        pytest.param(
            "matching-geo", "start", "matching.geo", "telemetry", id="matching-geo-in-start-up"
        ),
    ],
)
def test_a_service_started_before_its_redis_waits_for_it_and_becomes_ready(
    tmp_path: Path, service: str, phase: str, group: str, stream: str
) -> None:
    """docs/architecture.md: "start-up and warm-up retry for 15 s" — the service started while
    nothing listens on its Redis port, the server started there 3 s later: the same process
    creates its group, writes its heartbeat (what the supervisor reads as ready) and runs."""
    assert OUTAGE_S < START_PATIENCE_S / 3, "the outage must sit well inside the patience"
    server = EmbeddedRedis(tmp_path / "valkey").prepare()  # port and password; nothing runs
    assert not server.answers()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    log_path = tmp_path / f"{service}.log"
    env = clean_env(
        RIDEPULSE_REDIS_URL=server.url,
        RIDEPULSE_KEY_PREFIX=prefix,
        RIDEPULSE_DATA_DIR=str(tmp_path / "data"),
        RIDEPULSE_CONSUMER_NAME=f"{service}-1",
        RIDEPULSE_HEARTBEAT_INTERVAL_S="0.5",
        RIDEPULSE_LOG_FORMAT="json",
        RIDEPULSE_LOG_LEVEL="info",
    )
    proc = run_service(service, env, log_path)
    client = connect_sync(server.url)

    def output() -> str:
        return log_path.read_text()[-3000:]

    try:
        wait_until_sync(
            lambda: _retries(log_path) or proc.poll() is not None,
            timeout_s=60,
            what=f"{service} to find Redis missing and say it retries",
        )
        assert proc.poll() is None, f"{service} exited at once: {output()}"
        first_retry = time.monotonic()
        wait_until_sync(  # Redis stays away OUTAGE_S; the process must not give up meanwhile
            lambda: proc.poll() is not None or time.monotonic() - first_retry >= OUTAGE_S,
            timeout_s=OUTAGE_S + 5,
            what="the outage to last",
        )
        assert proc.poll() is None, f"{service} gave up within {OUTAGE_S}s: {output()}"
        retries = [e["event"] for e in _retries(log_path)]

        server.start()
        heartbeat = GlobalKeys(prefix).heartbeat(service, f"{service}-1")

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(f"{service} died: {output()}")
            raw: Any = client.get(heartbeat)
            beat: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None
            return beat if beat is not None and beat.get("pid") == proc.pid else None

        wait_until_sync(ready, timeout_s=30, interval_s=0.1, what=f"{service}'s heartbeat")
        assert len(retries) >= 2, f"expected retries with backoff during the outage: {retries}"
        assert set(retries) == {f"service.{phase}.redis_unavailable"}, retries
        events = [e["event"] for e in _log_events(log_path)]
        assert events.count("service.started") == 1, events
        groups: Any = client.xinfo_groups(getattr(MarketKeys("sf", prefix), stream))
        assert [g["name"] for g in groups] == [group.encode()], groups

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, f"{service} did not stop cleanly: {output()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        client.close()
        server.stop()
