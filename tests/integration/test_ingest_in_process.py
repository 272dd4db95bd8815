"""Ingest in process: the FastAPI app over httpx's ASGI transport (no uvicorn, no subprocess),
its lifespan run as uvicorn would, against the real embedded server. Validation, the
batcher's group commit, the per-driver rate limit and authentication, each seen from the
client and checked in Redis."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from ingest.app import TELEMETRY_CONNECTIONS
from ingest.batcher import MAX_PINGS_PER_ENTRY, TelemetryBatcher
from ingest.deps import MAX_BODY_BYTES
from ridepulse.auth import mint_token
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings
from tests.support.ingest import DOWNTOWN, SF_TRIP, Ingest, pings_in, start, telemetry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

YEAR_2100_MS = 4_102_444_800_000


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with start(settings) as running:
        yield running


# validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": 200, "lon": -122.4}, "lat"),
        ({"lat": 37.77}, "lon"),
        ({"lat": "north", "lon": -122.4}, "lat"),
        ({**DOWNTOWN, "speed_mps": 500}, "speed_mps"),
        ({**DOWNTOWN, "ts": YEAR_2100_MS}, "ts"),  # fixed: collection may be minutes earlier
        ({**DOWNTOWN, "ts": 1_000}, "ts"),  # 1970: far more than 5 minutes old
        ({**DOWNTOWN, "ts": True}, "ts"),
    ],
)
async def test_an_invalid_ping_is_a_422_naming_its_field_and_nothing_is_written(
    ingest: Ingest, redis: aioredis.Redis, body: dict[str, Any], field: str
) -> None:
    response = await ingest.ping("d1", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    assert response.json()["field"] == field
    assert await redis.exists(telemetry(ingest.settings)) == 0


async def test_a_body_that_is_not_json_is_a_422_not_a_500(ingest: Ingest) -> None:
    response = await ingest.http.post(
        "/v1/drivers/d1/location", content=b"{nope", headers=ingest.auth("driver", "d1")
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "body is not valid JSON"


async def test_a_ping_outside_every_market_is_refused(ingest: Ingest) -> None:
    response = await ingest.ping("d1", {"lat": 51.5, "lon": -0.12})
    assert response.status_code == 422
    assert "outside every service area" in response.json()["detail"]


async def test_a_valid_ping_is_in_the_stream_when_the_202_arrives(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    response = await ingest.ping("d1", {**DOWNTOWN, "speed_mps": 8.5})
    assert response.status_code == 202
    [ping] = await pings_in(redis, telemetry(ingest.settings))
    assert ping["driver_id"] == "d1" and ping["speed_mps"] == 8.5
    assert (ping["lat"], ping["lon"]) == (DOWNTOWN["lat"], DOWNTOWN["lon"])


async def test_a_batch_keeps_its_valid_pings_and_reports_each_invalid_one(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    pings = [
        {"driver_id": "d1", **DOWNTOWN},
        {"driver_id": "d2", "lat": 95, "lon": 0},
        {"driver_id": "bad id!", **DOWNTOWN},
        {"driver_id": "d3", **DOWNTOWN},
    ]
    response = await ingest.batch(pings)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "lat"), (2, "driver_id")]
    written = await pings_in(redis, telemetry(ingest.settings))
    assert sorted(p["driver_id"] for p in written) == ["d1", "d3"]


@pytest.mark.timeout(60)  # the old id rule held the loop past any wait: pytest-timeout's alarm
async def test_a_batch_of_long_ids_then_a_bad_one_is_answered_at_once(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    """The fast path's regex over the joined ids tried every way to split each id before it
    refused the last one (9 ids of 8 letters: 45.8 s with the event loop held, /healthz
    waiting as long); 200 ids of 64 characters are now refused in milliseconds and the batch
    goes on to the per-item path, which names the bad one."""
    ids = [f"{i:03d}" + "b" * 61 for i in range(200)]
    started = time.monotonic()
    response = await ingest.batch([{"driver_id": d, **DOWNTOWN} for d in [*ids, "bad id"]])
    took_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (200, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(200, "driver_id")]
    assert took_s < 10, f"a batch of 201 pings took {took_s:.1f} s"
    written = await pings_in(redis, telemetry(ingest.settings))
    assert sorted(p["driver_id"] for p in written) == ids


async def test_a_batch_larger_than_the_limit_is_refused_whole(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with start(settings.model_copy(update={"max_batch_pings": 3})) as ingest:
        pings = [{"driver_id": f"d{i}", **DOWNTOWN} for i in range(4)]
        response = await ingest.batch(pings)
        assert response.status_code == 422 and response.json()["field"] == "pings"
    assert await redis.exists(telemetry(settings)) == 0


@pytest.mark.parametrize("nested", [False, True], ids=["as-items", "in-one-item"])
async def test_a_4_mib_batch_of_empty_objects_is_refused_without_parsing_it(
    ingest: Ingest, redis: aioredis.Redis, nested: bool
) -> None:
    """1.4 M `{}` fail the fast decoder at the first item; the per-item path parsed the whole
    body (orjson: 1.4 M dicts, ~150 MB traced, ingest's RSS 80 → 198 MB) before it counted the
    items, and one item holding them all was never counted. What could start a JSON value is
    now counted first: what is traced is the body's copies."""
    empties = (MAX_BODY_BYTES - len(b'{"pings":[[]]}') + 1) // 3
    items = b",".join([b"{}"] * empties)
    body = b'{"pings":[' + (b"[" + items + b"]" if nested else items) + b"]}"
    assert len(body) <= MAX_BODY_BYTES and empties > 1_000_000
    tracemalloc.start()
    try:
        response = await ingest.http.post(
            "/v1/telemetry", content=body, headers=ingest.auth("fleet", "f1")
        )
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.text[:300]
    limit = ingest.settings.max_batch_pings
    assert response.json()["detail"].startswith(f"at most {limit} pings per batch"), response.text[
        :300
    ]
    assert response.json()["field"] == "pings"
    assert peak_mb < 30, f"answering it traced {peak_mb:.0f} MB (the body is 4 MiB)"
    assert await redis.exists(telemetry(ingest.settings)) == 0


async def test_a_batch_at_the_limit_with_bad_items_still_names_each(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """The per-item path stops past the limit, not at it: a full batch is checked item by item."""
    async with start(settings.model_copy(update={"max_batch_pings": 3})) as ingest:
        pings: list[dict[str, Any]] = [{"driver_id": "d1", **DOWNTOWN}, {"driver_id": "d2"}, {}]
        response = await ingest.batch(pings)
        assert response.status_code == 202, response.text
        body = response.json()
        assert (body["accepted"], body["rejected"]) == (1, 2)
        assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "lat"), (2, "driver_id")]
        over = await ingest.batch([*pings, {}])
        assert over.status_code == 422, over.text
        assert over.json()["detail"] == "at most 3 pings per batch"
    assert [p["driver_id"] for p in await pings_in(redis, telemetry(settings))] == ["d1"]


class NoFreeSlot(asyncio.Semaphore):
    """Batch slots all taken (ingest as busy as it gets), telling when a request asks for one."""

    def __init__(self) -> None:
        super().__init__(0)
        self.asked = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        self.asked.set()
        return await super().acquire()


async def test_a_batch_that_finds_no_slot_in_time_is_shed_with_retry_after(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """A batch waits at the door at most telemetry_shed_lag_s, then gets 429 with Retry-After,
    instead of queueing where no lag shows it."""
    async with start(settings.model_copy(update={"telemetry_shed_lag_s": 0.3})) as ingest:
        ingest.deps.batch_slots = NoFreeSlot()
        started = time.monotonic()
        response = await asyncio.wait_for(  # without the bound it would wait for ever
            ingest.batch([{"driver_id": "d1", **DOWNTOWN}]), timeout=10
        )
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "1"
        assert time.monotonic() - started >= 0.3
    assert await redis.exists(telemetry(settings)) == 0


async def test_a_batch_waits_for_a_slot_freed_within_the_limit(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    slots = ingest.deps.batch_slots = NoFreeSlot()
    waiting = asyncio.create_task(ingest.batch([{"driver_id": "d1", **DOWNTOWN}]))
    await asyncio.wait_for(slots.asked.wait(), timeout=5)
    assert not waiting.done()  # at the door, not answered
    slots.release()
    assert (await asyncio.wait_for(waiting, timeout=5)).status_code == 202
    assert len(await pings_in(redis, telemetry(ingest.settings))) == 1


# the batcher's group commit


async def test_concurrent_pings_share_appends_and_every_one_is_written(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    drivers = [f"d{i}" for i in range(200)]
    responses = await asyncio.gather(*(ingest.ping(d, DOWNTOWN) for d in drivers))
    assert {r.status_code for r in responses} == {202}
    stream = telemetry(ingest.settings)
    assert sorted(p["driver_id"] for p in await pings_in(redis, stream)) == sorted(drivers)
    entries = await redis.xlen(stream)
    # one append in flight gathers the next requests' pings: far fewer entries than requests
    assert entries <= len(drivers) // 4, f"{entries} entries for {len(drivers)} pings"
    assert ingest.deps.batcher.pings_appended == len(drivers)


async def test_submissions_made_while_no_append_has_started_go_out_as_one_entry(
    redis: aioredis.Redis, settings: Settings
) -> None:
    batcher = TelemetryBatcher(redis, source="test", maxlen=10_000)
    stream = telemetry(settings)
    pings = [{"driver_id": f"d{i}", "lat": 37.77, "lon": -122.42, "ts": i} for i in range(50)]
    await asyncio.gather(*(batcher.submit(stream, [p]) for p in pings))
    assert await redis.xlen(stream) == 1
    assert await pings_in(redis, stream) == pings


async def test_a_failed_append_fails_every_request_it_carried_then_recovers(
    redis: aioredis.Redis, settings: Settings
) -> None:
    batcher = TelemetryBatcher(redis, source="test", maxlen=10_000)
    wrong_type = f"{settings.key_prefix}:not-a-stream"
    await redis.set(wrong_type, "x")  # XADD on a string: WRONGTYPE
    ping = {"driver_id": "d1", "lat": 37.77, "lon": -122.42, "ts": 1}
    results = await asyncio.gather(
        *(batcher.submit(wrong_type, [ping]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) and "WRONGTYPE" in str(r) for r in results), results
    await batcher.submit(telemetry(settings), [ping])
    assert await pings_in(redis, telemetry(settings)) == [ping]


async def test_storage_refusing_a_write_is_a_503_with_retry_after_not_a_500(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    await redis.set(telemetry(ingest.settings), "x")  # XADD on a string: WRONGTYPE
    response = await ingest.ping("d1", DOWNTOWN)
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": "unavailable",
        "detail": "storage is unavailable; retry shortly",
    }
    assert response.headers["Retry-After"] == "1"


class TornConnection:
    """A telemetry client whose node's connection is torn down under every append: redis-py's
    own Connection, its writer gone, raises from inside the client, as a cluster node failing
    mid-write did (ridepulse/bus/faults.py). The first append is held until `hold` returns."""

    def __init__(self, hold: Callable[[], Awaitable[object]]) -> None:
        self.hold: Callable[[], Awaitable[object]] | None = hold

    def pipeline(self, transaction: bool = False) -> TornConnection:
        return self

    def xadd(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def execute(self) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            await hold()
        await Connection(host="127.0.0.1", port=1)._send_packed_command([b"PING"])


async def test_a_connection_torn_mid_append_is_a_503_for_every_ping_the_append_carried(
    ingest: Ingest,
) -> None:
    """Only the first of the requests sharing a failed append got its 503: the others re-raised
    the same exception, whose traceback no longer showed redis-py, and answered 500."""
    drivers = [f"d{i}" for i in range(5)]

    async def every_ping_is_in() -> bool:
        # a ping passes the rate limiter just before it joins the batcher (accept_ping)
        return len(ingest.deps.limiter) == len(drivers)

    # the first append is held until every ping is in: the last four share the second append
    torn = TornConnection(lambda: wait_until(every_ping_is_in, what="every ping in the batcher"))
    telemetry_client, ingest.deps.batcher.redis = ingest.deps.batcher.redis, torn
    try:
        responses = await asyncio.gather(*(ingest.ping(d, DOWNTOWN) for d in drivers))
    finally:
        ingest.deps.batcher.redis = telemetry_client
    answers = [(r.status_code, r.json()["error"], r.headers.get("Retry-After")) for r in responses]
    assert answers == [(503, "unavailable", "1")] * len(drivers), answers


async def test_storage_down_is_a_503_with_retry_after_for_pings_and_ride_requests(
    settings: Settings,
) -> None:
    nothing_there = f"redis://127.0.0.1:{free_port()}"  # a port no server listens on
    async with start(settings.model_copy(update={"redis_url": nothing_there})) as ingest:
        rider = ingest.auth("rider", "r1")
        trip = {"pickup": DOWNTOWN, "dropoff": {"lat": 37.7599, "lon": -122.4148}}
        for response in (
            await ingest.ping("d1", DOWNTOWN),
            await ingest.http.post("/v1/rides", json=trip, headers=rider),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "unavailable"
            assert response.headers["Retry-After"] == "1"


# the rate limiter


async def test_a_driver_past_its_burst_gets_429_while_others_are_unaffected(
    settings: Settings, redis: aioredis.Redis
) -> None:
    slow = settings.model_copy(update={"ping_burst": 3.0, "ping_rate_per_s": 0.001})
    async with start(slow) as ingest:
        codes = [(await ingest.ping("d1", DOWNTOWN)).status_code for _ in range(5)]
        assert codes == [202, 202, 202, 429, 429]
        refused = await ingest.ping("d1", DOWNTOWN)
        assert refused.json()["error"] == "overloaded" and "Retry-After" in refused.headers
        assert (await ingest.ping("d2", DOWNTOWN)).status_code == 202
    drivers = [p["driver_id"] for p in await pings_in(redis, telemetry(settings))]
    assert sorted(drivers) == ["d1", "d1", "d1", "d2"]


def over_rate(index: int, driver: str) -> dict[str, Any]:
    return {"index": index, "field": None, "reason": f"driver {driver} exceeds 0.001 pings/s"}


async def test_a_fleet_batch_draws_on_each_drivers_bucket_and_rejects_the_pings_past_it(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """README: RIDEPULSE_PING_RATE_PER_S is per driver, whoever sends the ping; a fleet batch
    for a driver past its rate was accepted whole."""
    slow = settings.model_copy(update={"ping_burst": 3.0, "ping_rate_per_s": 0.001})
    async with start(slow) as ingest:
        assert [(await ingest.ping("d1", DOWNTOWN)).status_code for _ in range(2)] == [202, 202]
        batch = [{"driver_id": d, **DOWNTOWN} for d in ("d1", "d2", "d1", "d2", "d1", "d2", "d2")]
        response = await ingest.batch(batch)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "accepted": 4,
            "rejected": 3,
            "errors": [over_rate(2, "d1"), over_rate(4, "d1"), over_rate(6, "d2")],
        }
        # each driver once (the decoder's fast path): only the drained driver's ping is refused
        again = await ingest.batch(
            [{"driver_id": "d3", **DOWNTOWN}, {"driver_id": "d2", **DOWNTOWN}]
        )
        assert (again.json()["accepted"], again.json()["errors"][0]["index"]) == (1, 1)
        assert (await ingest.ping("d2", DOWNTOWN)).status_code == 429  # drained by the batch
    drivers = sorted(p["driver_id"] for p in await pings_in(redis, telemetry(settings)))
    assert drivers == ["d1"] * 3 + ["d2"] * 3 + ["d3"]


async def test_a_valid_batch_with_a_driver_past_its_rate_is_judged_on_its_decoded_pings(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """A valid batch with one driver past its bucket went down the path for bad batches: parsed
    again and its JSON values counted, so a field the decoder ignores, full of commas, had the
    whole batch refused (422) instead of the one ping past its rate."""
    slow = settings.model_copy(update={"ping_burst": 1.0, "ping_rate_per_s": 0.001})
    async with start(slow) as ingest:
        assert (await ingest.ping("d1", DOWNTOWN)).status_code == 202  # d1's one token
        note = "," * (slow.max_batch_pings * 40)  # an app's free text, ignored by the API
        batch = [{"driver_id": "d2", **DOWNTOWN, "note": note}, {"driver_id": "d1", **DOWNTOWN}]
        response = await ingest.batch(batch)
        assert response.status_code == 202, response.text[:300]
        assert response.json() == {"accepted": 1, "rejected": 1, "errors": [over_rate(1, "d1")]}
    drivers = sorted(p["driver_id"] for p in await pings_in(redis, telemetry(settings)))
    assert drivers == ["d1", "d2"]


async def test_a_fleet_batch_within_every_drivers_burst_is_accepted_whole(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    """The default burst (20) at one instant, a driver's 20 pings in one batch; then 200
    drivers once each. A burst's refill times sum in floats (19 × 0.2 s), never short of it."""
    one_driver = [{"driver_id": "d1", **DOWNTOWN}] * 20
    fleet = [{"driver_id": f"f{i}", **DOWNTOWN} for i in range(200)]
    for batch in (one_driver, fleet):
        response = await ingest.batch(batch)
        assert response.json() == {"accepted": len(batch), "rejected": 0, "errors": []}
    assert len(await pings_in(redis, telemetry(ingest.settings))) == 220
    assert (await ingest.ping("d1", DOWNTOWN)).status_code == 429


# authentication


async def test_a_ping_without_a_token_or_with_a_forged_one_is_401(ingest: Ingest) -> None:
    missing = await ingest.http.post("/v1/drivers/d1/location", json=DOWNTOWN)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    forged = mint_token("another-secret-0123456789abcdef0123456789", "driver", "d1")
    response = await ingest.http.post(
        "/v1/drivers/d1/location", json=DOWNTOWN, headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401


async def test_a_driver_may_ping_only_for_itself_and_fleet_for_anyone(ingest: Ingest) -> None:
    as_other = await ingest.http.post(
        "/v1/drivers/d2/location", json=DOWNTOWN, headers=ingest.auth("driver", "d1")
    )
    assert as_other.status_code == 403 and as_other.json()["error"] == "forbidden"
    assert (await ingest.ping("d2", DOWNTOWN, role="fleet")).status_code == 202
    assert (await ingest.ping("d2", DOWNTOWN, role="rider")).status_code == 403


async def test_a_batch_needs_a_fleet_or_ops_token(ingest: Ingest) -> None:
    for role, status in (("driver", 403), ("rider", 403), ("fleet", 202), ("ops", 202)):
        response = await ingest.batch([{"driver_id": "d1", **DOWNTOWN}], role=role)
        assert response.status_code == status, (role, response.text)


async def test_a_valid_batch_is_written_as_the_per_item_path_would_write_it(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    pings = [
        {"driver_id": "d1", "lat": 37.78, "lon": -122.42, "speed_mps": 3},
        {"driver_id": "d2", **DOWNTOWN, "heading": 90.5, "unknown": "ignored"},
    ]
    response = await ingest.batch(pings)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "rejected": 0, "errors": []}
    first, second = await pings_in(redis, telemetry(ingest.settings))
    assert set(first) == {"driver_id", "lat", "lon", "ts", "speed_mps"}
    assert (first["driver_id"], first["speed_mps"], isinstance(first["ts"], int)) == ("d1", 3, True)
    assert second["heading"] == 90.5 and "unknown" not in second


async def test_a_largest_batch_is_split_into_entries_of_at_most_2000_pings(
    ingest: Ingest, redis: aioredis.Redis
) -> None:
    """docs/architecture.md: fleet batches are split into entries of at most 2,000 pings (a
    consumer's read of RIDEPULSE_TELEMETRY_READ_COUNT entries stays bounded)."""
    size = ingest.settings.max_batch_pings
    response = await ingest.batch([{"driver_id": f"d{i}", **DOWNTOWN} for i in range(size)])
    assert response.status_code == 202 and response.json()["accepted"] == size
    entries: Any = await redis.xrange(telemetry(ingest.settings))
    sizes = [len(orjson.loads(fields[b"data"])["pings"]) for _, fields in entries]
    assert MAX_PINGS_PER_ENTRY == 2_000 and sum(sizes) == size
    assert sizes == [2_000] * (size // 2_000) + ([size % 2_000] if size % 2_000 else []), sizes


async def test_rides_and_telemetry_use_separate_redis_pools(ingest: Ingest) -> None:
    """Telemetry's group commit never holds a connection a ride request waits for."""
    rides_pool = ingest.deps.redis.connection_pool
    assert ingest.deps.batcher.redis.connection_pool is not rides_pool
    assert all(store.redis is ingest.deps.redis for store in ingest.deps.stores.values())


async def test_the_ride_pool_is_as_wide_as_the_max_connections_setting(settings: Settings) -> None:
    """README: RIDEPULSE_REDIS_MAX_CONNECTIONS is the pool size per process: ingest's ride
    requests' pool has that many connections (telemetry's and the notifier's have their own)."""
    async with start(settings.model_copy(update={"redis_max_connections": 7})) as ingest:
        pool: Any = ingest.deps.redis.connection_pool
        assert pool.max_connections == 7, pool
        assert ingest.deps.batcher.redis.connection_pool.max_connections == TELEMETRY_CONNECTIONS


# An Idempotency-Key is the rider's within the pickup's market: its record lives in that
# market's slot, so a ride request never waits on another market's shard (docs/architecture.md).
# The same body always has the same pickup, so a retry always reaches the first answer.

NYC_TRIP = {
    "pickup": {"lat": 40.7580, "lon": -73.9855},
    "dropoff": {"lat": 40.7680, "lon": -73.9755},
}


async def test_a_key_sent_at_once_to_two_markets_with_one_body_each_makes_one_ride_each(
    settings: Settings,
) -> None:
    """With several markets each retry of one body replays its market's ride, even when the
    same key is in flight in another market at once: no cross-market claim, no 409."""
    async with start(settings.model_copy(update={"markets": "sf,nyc"})) as ingest:
        for round_ in range(5):
            key, rider = f"race-{round_}", f"rider-{round_}"
            sf, nyc, sf_again = await asyncio.gather(
                ingest.request_ride(rider, SF_TRIP, key),
                ingest.request_ride(rider, NYC_TRIP, key),
                ingest.request_ride(rider, SF_TRIP, key),
            )
            assert [r.status_code for r in (sf, nyc, sf_again)] == [202] * 3, (sf.text, nyc.text)
            assert sf.json() == sf_again.json()
            assert sf.json()["ride_id"].startswith("sf-")
            assert nyc.json()["ride_id"].startswith("nyc-")


async def test_a_key_replays_in_its_market_and_refuses_another_body_there(
    settings: Settings,
) -> None:
    async with start(settings.model_copy(update={"markets": "sf,nyc"})) as ingest:
        first = await ingest.request_ride("rider-x", SF_TRIP, "trip-1")
        assert first.status_code == 202, first.text
        again = await ingest.request_ride("rider-x", SF_TRIP, "trip-1")
        assert again.status_code == 202 and again.json() == first.json()
        other_body = {**SF_TRIP, "dropoff": {"lat": 37.7693, "lon": -122.4293}}
        refused = await ingest.request_ride("rider-x", other_body, "trip-1")
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "idempotency_key"
        elsewhere = await ingest.request_ride("rider-x", NYC_TRIP, "trip-1")
        assert elsewhere.status_code == 202, elsewhere.text
        assert elsewhere.json()["ride_id"] != first.json()["ride_id"]


async def test_a_driver_answering_an_offer_the_rider_just_cancelled_is_told_409(
    ingest: Ingest,
) -> None:
    """The rider's cancel and the driver's answer cross all the time (locust's stop drain does
    it on every run): the driver who held the offer learns the ride is cancelled (409), as a
    driver whose offer timed out does; a driver never offered it still gets 404."""
    driver = ingest.auth("driver", "d1")
    assert (await ingest.ping("d1", DOWNTOWN)).status_code == 202
    available = await ingest.http.put(
        "/v1/drivers/d1/status", json={"status": "available"}, headers=driver
    )
    assert available.status_code == 200, available.text
    requested = await ingest.request_ride("rider-c", SF_TRIP, "trip-c")
    assert requested.status_code == 202, requested.text
    ride_id = requested.json()["ride_id"]
    store = ingest.deps.store_for_ride(ride_id)
    await store.offer(ride_id=ride_id, driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)

    cancel = await ingest.http.post(
        f"/v1/rides/{ride_id}/cancel", headers=ingest.auth("rider", "rider-c")
    )
    assert cancel.status_code == 200, cancel.text
    for answer in ("accept", "decline"):
        late = await ingest.http.post(f"/v1/rides/{ride_id}/{answer}", headers=driver)
        assert late.status_code == 409, late.text
        assert "cancelled" in late.json()["detail"]
        stranger = await ingest.http.post(
            f"/v1/rides/{ride_id}/{answer}", headers=ingest.auth("driver", "d2")
        )
        assert stranger.status_code == 404, stranger.text


# paths


@pytest.mark.parametrize(
    "path", ["/v1/drivers/d-1%2F", "/v1/drivers/d-1/", "/v1/rides/r-1%2F", "/healthz/"]
)
async def test_a_path_with_a_trailing_or_encoded_slash_is_a_json_404_not_a_redirect(
    ingest: Ingest, path: str
) -> None:
    """It was a 307 to the path without it, at the host the client named: `d-1%2F` sent a
    client to d-1's record, and `Host: evil.example` made the Location evil.example's."""
    headers = {"host": "evil.example", **ingest.auth("driver", "d-1")}
    response = await ingest.http.get(path, headers=headers)
    assert response.status_code == 404, (response.status_code, response.headers)
    assert "location" not in response.headers, response.headers
    assert response.json()["error"] == "not_found", response.text
