"""RideStore against the real embedded server: each step writes the projections and exactly one
decodable event atomically; refusals, fencing, redelivery, idempotency and concurrency."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from ridepulse.contracts.envelope import FIELDS, derived_event_id
from ridepulse.contracts.events import (
    Point,
    RideCancelledV1,
    RideCompletedV1,
    RideExpiredV1,
    RideOfferedV1,
    RideUnmatchedV1,
)
from ridepulse.contracts.registry import Event, decode
from ridepulse.errors import Conflict, Forbidden, InvalidInput, NotFound, RidePulseError
from ridepulse.keys import MarketKeys
from ridepulse.positions import pack_position
from ridepulse.rides import Ride, RideStore
from ridepulse.rides.clock import server_time_ms
from ridepulse.rides.projection import decode_hash
from ridepulse.rides.state import (
    DRIVER_HOLDS_RIDE,
    DRIVER_STATUS_OF_RIDE,
    TERMINAL,
    TRANSITIONS,
    allowed_actions,
    next_status,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749295, lon=-122.4194155)
DROPOFF = Point(lat=37.8024, lon=-122.4058)


Entries = list[tuple[bytes, dict[bytes, bytes]]]


async def entries(redis: aioredis.Redis, stream: str, start: bytes = b"-") -> Entries:
    return cast(Entries, await redis.xrange(stream, min=start))


async def hash_of(redis: aioredis.Redis, key: str) -> dict[str, str]:
    return decode_hash(await redis.hgetall(key))


async def redis_now_ms(store: RideStore) -> int:
    """The server clock, which the scripts use for every timestamp."""
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def past_offer_expiry(store: RideStore, ride: Ride) -> None:
    """Wait until the server clock passes the ride's offer expiry (a timeout applies only then)."""
    expires_at = ride.offer_expires_at
    assert expires_at is not None

    async def expired() -> bool:
        return await redis_now_ms(store) > expires_at

    await wait_until(expired, timeout_s=10, what="the offer to expire")


async def members(redis: aioredis.Redis, key: str) -> set[str]:
    return {m.decode() for m in cast(list[bytes], await redis.zrange(key, 0, -1))}


class Stream:
    """Reads the rides stream from where the last read stopped, decoding every entry."""

    def __init__(self, redis: aioredis.Redis, keys: MarketKeys) -> None:
        self.redis, self.key, self.last = redis, keys.rides, b"-"

    async def all(self) -> list[Event]:
        return [decode(f) for _, f in await entries(self.redis, self.key)]

    async def new(self) -> list[Event]:
        start = self.last if self.last == b"-" else b"(" + self.last
        new = await entries(self.redis, self.key, start)
        if new:
            self.last = new[-1][0]
        return [decode(f) for _, f in new]


@pytest.fixture
def stream(redis: aioredis.Redis, keys: MarketKeys) -> Stream:
    return Stream(redis, keys)


async def request(store: RideStore, ride_id: str = "r1", rider_id: str = "u1", **kw: Any) -> Ride:
    kw.setdefault("deadline_s", 60.0)
    ride, created = await store.request_ride(
        ride_id=ride_id, rider_id=rider_id, pickup=PICKUP, dropoff=DROPOFF, **kw
    )
    assert created, f"expected {ride_id} to be created"
    return ride


async def ride_at(
    store: RideStore,
    status: str,
    ride_id: str = "r1",
    driver_id: str = "d1",
    offer_timeout_s: float = 30,
) -> Ride:
    """A ride walked through the lifecycle up to `status`, with `driver_id` online."""
    ride = await request(store, ride_id)
    await store.set_driver_status(driver_id, "available")
    steps: list[tuple[str, Callable[[], Awaitable[Ride | None]]]] = [
        (
            "offered",
            lambda: store.offer(
                ride_id=ride_id,
                driver_id=driver_id,
                pickup_eta_s=90,
                offer_timeout_s=offer_timeout_s,
            ),
        ),
        ("matched", lambda: store.accept(ride_id, driver_id)),
        ("driver_arrived", lambda: store.arrived(ride_id, driver_id)),
        ("started", lambda: store.start(ride_id, driver_id)),
        ("completed", lambda: store.complete(ride_id, driver_id)),
    ]
    for reached, step in steps:
        if ride.status == status:
            break
        moved = await step()
        assert moved is not None and moved.status == reached
        ride = moved
    assert ride.status == status
    return ride


async def assert_consistent(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, rides: list[str], drivers: list[str]
) -> None:
    """Rides, drivers, indexes and event versions agree; no driver holds two rides."""
    statuses = await hash_of(redis, keys.driver_statuses)
    open_rides, offers, active = (
        await members(redis, keys.open_rides),
        await members(redis, keys.offer_timeouts),
        await members(redis, keys.active_rides),
    )
    held: dict[str, str] = {}
    for driver_id in drivers:
        driver = await store.get_driver(driver_id)
        if driver is None:
            continue
        assert statuses[driver_id] == driver.status, f"{driver_id} status index disagrees"
        if driver.status in DRIVER_HOLDS_RIDE:
            assert driver.ride_id is not None, f"{driver_id} is {driver.status} without a ride"
            held[driver_id] = driver.ride_id
        else:
            assert driver.ride_id is None, (
                f"{driver_id} is {driver.status} yet holds {driver.ride_id}"
            )
    assert len(set(held.values())) == len(held), f"a ride is held twice: {held}"
    # matching's geo index holds exactly the available drivers that have a position
    positioned = set((await hash_of(redis, keys.positions)).keys())
    indexed = await members(redis, keys.drivers_geo)
    expected_indexed = {d for d in drivers if statuses.get(d) == "available" and d in positioned}
    assert indexed & set(drivers) == expected_indexed, "geo index disagrees with driver statuses"
    versions: dict[str, list[int]] = {}
    for event in await Stream(redis, keys).all():
        if event.type.startswith("ride."):
            versions.setdefault(event.envelope.subject.removeprefix("ride/"), []).append(
                event.data.model_dump()["version"]
            )
    for ride_id in rides:
        ride = await store.get(ride_id)
        if ride is None:
            continue
        assert versions[ride_id] == list(range(1, ride.version + 1)), f"{ride_id} event versions"
        assert (ride_id in open_rides) == (ride.status == "requested"), ride
        assert (ride_id in offers) == (ride.status == "offered"), ride
        assert (ride_id in active) == (ride.status not in TERMINAL), ride
        expected_driver = DRIVER_STATUS_OF_RIDE.get(ride.status)
        holder = ride.driver_id if ride.status != "offered" else ride.offer_driver_id
        if expected_driver is None:
            assert ride_id not in held.values(), f"{ride_id} is {ride.status} but a driver holds it"
        else:
            assert holder is not None and held.get(holder) == ride_id, f"{ride_id} driver {holder}"
            assert statuses[holder] == expected_driver


# --- every step: projection + exactly one event ------------------------------------------


async def test_request_writes_projection_indexes_and_one_requested_event(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    # A quoted ride takes fare and surge from the quote record, which must fit the trip.
    quote = {"rider_id": "u1", "pickup_cell": "p", "dropoff_cell": "d", "fare": "12.35"}
    await redis.hset(keys.quote("q1"), mapping={**quote, "surge": "1.25"})  # type: ignore[dict-item]
    ride = await request(
        store, quote_id="q1", pickup_cells=["p"], dropoff_cells=["d"], deadline_s=45
    )
    assert await redis.hget(keys.quote("q1"), "ride_id") == b"r1", "the quote is used up"

    raw = await hash_of(redis, keys.ride("r1"))
    assert raw["status"] == "requested" and raw["version"] == "1" and raw["driver_id"] == ""
    assert raw["market"] == "sf" and raw["rider_id"] == "u1" and raw["attempt"] == "0"
    assert (raw["fare"], raw["surge"], raw["quote_id"]) == ("12.35", "1.25", "q1")
    assert int(raw["deadline_at"]) - int(raw["requested_at"]) == 45_000
    assert await redis.zscore(keys.open_rides, "r1") == ride.deadline_at
    assert await redis.zscore(keys.active_rides, "r1") == ride.requested_at
    assert await redis.smembers(keys.rider_rides("u1")) == {b"r1"}
    assert await redis.hget(keys.ride_counts, "requested") == b"1"

    [event] = await stream.new()
    assert event.type == "ride.requested" and event.envelope.subject == "ride/r1"
    assert event.data.model_dump() == {
        "ride_id": "r1",
        "rider_id": "u1",
        "pickup": PICKUP.model_dump(),
        "dropoff": DROPOFF.model_dump(),
        "requested_at": ride.requested_at,
        "deadline_at": ride.deadline_at,
        "quote_id": "q1",
        "fare": 12.35,
        "surge": 1.25,
        "version": 1,
    }


async def test_full_trip_writes_each_state_with_one_event_and_frees_the_driver(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    await request(store, fare=10.0)
    await store.set_driver_status("d1", "available")
    await stream.new()
    steps: list[tuple[Callable[[], Awaitable[Ride | None]], str, str, str]] = [
        (
            lambda: store.offer(
                ride_id="r1", driver_id="d1", pickup_eta_s=95.25, offer_timeout_s=10
            ),
            "offered",
            "ride.offered",
            "offered",
        ),
        (lambda: store.accept("r1", "d1"), "matched", "ride.matched", "en_route"),
        (lambda: store.arrived("r1", "d1"), "driver_arrived", "ride.driver_arrived", "en_route"),
        (lambda: store.start("r1", "d1"), "started", "ride.started", "on_trip"),
        (lambda: store.complete("r1", "d1", fare=14.2), "completed", "ride.completed", "available"),
    ]
    for step, status, event_type, driver_status in steps:
        ride = await step()
        assert ride is not None and ride.status == status
        stored = await store.get("r1")
        assert stored == ride, "the returned ride is the stored projection"
        [event] = await stream.new()
        data = event.data.model_dump()
        assert (event.type, data["version"], data["ride_id"]) == (event_type, ride.version, "r1")
        driver = await store.get_driver("d1")
        assert driver is not None and driver.status == driver_status, status
        assert await redis.hget(keys.driver_statuses, "d1") == driver_status.encode()

    final = await store.get("r1")
    assert final is not None and final.fare == 14.2
    assert event.payload(RideCompletedV1).fare == 14.2
    assert [s for s, _ in final.timeline] == [
        "requested",
        "offered",
        "matched",
        "driver_arrived",
        "started",
        "completed",
    ]
    assert [at for _, at in final.timeline] == sorted(at for _, at in final.timeline)
    driver = await store.get_driver("d1")
    assert driver is not None and driver.ride_id is None
    assert await redis.zscore(keys.active_rides, "r1") is None
    counts = {k: int(v) for k, v in (await hash_of(redis, keys.ride_counts)).items()}
    assert counts == dict.fromkeys(
        ["requested", "offered", "matched", "driver_arrived", "started", "completed"], 1
    )
    await assert_consistent(store, redis, keys, ["r1"], ["d1"])


async def pinged(redis: aioredis.Redis, keys: MarketKeys, driver_id: str, packed: str) -> None:
    """The driver's ping as matching-geo applies it: its position, stamped fresh on the server
    clock (a driver silent past driver_stale_s goes available unindexed)."""
    await redis.hset(keys.positions, driver_id, packed)
    await redis.zadd(keys.drivers_seen, {driver_id: await server_time_ms(redis)})


async def test_geo_index_holds_available_drivers_only_in_step_with_their_status(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """Matching's GEOSEARCH must return candidates: every status change moves the driver in or
    out of the geo index in the same script, at its last known position."""
    await pinged(redis, keys, "d1", pack_position(37.78, -122.41, 1))

    async def indexed() -> dict[str, tuple[float, float]]:
        found = cast(
            list[Any],
            await redis.geosearch(
                keys.drivers_geo,
                longitude=-122.41,
                latitude=37.78,
                radius=1,
                unit="km",
                withcoord=True,
            ),
        )
        return {m.decode(): (round(c[1], 4), round(c[0], 4)) for m, c in found}

    assert await indexed() == {}
    await store.set_driver_status("d1", "available")
    assert await indexed() == {"d1": (37.78, -122.41)}
    await request(store)
    await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    assert await indexed() == {}, "an offered driver is no candidate"
    await store.decline("r1", "d1")
    assert await indexed() == {"d1": (37.78, -122.41)}, "declining frees the driver"
    await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    for step in (store.accept, store.arrived, store.start):
        await step("r1", "d1")
        assert await indexed() == {}
    await pinged(redis, keys, "d1", pack_position(37.781, -122.411, 2))  # drove the trip
    await store.complete("r1", "d1")
    assert await indexed() == {"d1": (37.781, -122.411)}, "back in the index where the trip ended"
    await store.set_driver_status("d1", "offline")
    assert await indexed() == {}
    await store.set_driver_status("d2", "available")  # never pinged: no position to index
    assert await indexed() == {}


async def test_offer_records_offer_fields_and_timeout_index(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    ride = await ride_at(store, "offered")
    assert (ride.offer_driver_id, ride.attempt, ride.pickup_eta_s, ride.driver_id) == (
        "d1",
        1,
        90.0,
        None,
    )
    assert ride.offer_expires_at is not None
    assert await redis.zscore(keys.offer_timeouts, "r1") == ride.offer_expires_at
    assert await redis.zscore(keys.open_rides, "r1") is None
    offered = [e for e in await stream.all() if e.type == "ride.offered"]
    assert [e.data.model_dump() for e in offered] == [
        {
            "ride_id": "r1",
            "driver_id": "d1",
            "pickup_eta_s": 90.0,
            "expires_at": ride.offer_expires_at,
            "attempt": 1,
            "version": 2,
        }
    ]


async def test_every_entry_has_the_envelope_fields_in_contract_order(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    await ride_at(store, "completed")
    await store.set_driver_status("d1", "offline")
    written = await entries(redis, keys.rides)
    assert len(written) == 8
    for _, fields in written:
        assert tuple(fields) == FIELDS
        assert fields[b"source"] == b"test" and fields[b"v"] == b"1"


# --- refusals ----------------------------------------------------------------------------


async def test_step_in_the_wrong_state_raises_conflict_naming_the_current_state(
    store: RideStore, stream: Stream
) -> None:
    await ride_at(store, "completed")
    await stream.new()
    with pytest.raises(Conflict, match=r"^ride is completed; cannot start$"):
        await store.start("r1", "d1")
    with pytest.raises(Conflict, match=r"^ride is completed; cannot cancel$"):
        await store.cancel("r1", by="ops", actor_id="ops1")
    await request(store, "r2")
    await stream.new()
    with pytest.raises(Conflict, match=r"^ride is requested; cannot accept$"):
        await store.accept("r2", "d1")
    assert await stream.new() == [], "a refused step appends nothing"
    ride = await store.get("r2")
    assert ride is not None and (ride.status, ride.version) == ("requested", 1)


async def test_only_the_offered_driver_can_accept(store: RideStore) -> None:
    await ride_at(store, "offered")
    await store.set_driver_status("d2", "available")
    with pytest.raises(Conflict, match=r"^ride is offered with another driver; cannot accept$"):
        await store.accept("r1", "d2")
    driver = await store.get_driver("d2")
    assert driver is not None and driver.status == "available"


async def test_unknown_ride_raises_not_found(store: RideStore) -> None:
    with pytest.raises(NotFound):
        await store.accept("nope", "d1")
    with pytest.raises(NotFound):
        await store.cancel("nope", by="rider", actor_id="u1")
    with pytest.raises(NotFound):
        await store.offer(ride_id="nope", driver_id="d1", pickup_eta_s=1, offer_timeout_s=1)
    assert await store.get("nope") is None and await store.get_driver("nobody") is None


async def test_invalid_inputs_are_refused_before_redis(store: RideStore) -> None:
    with pytest.raises(InvalidInput):
        await request(store, "r,1")
    with pytest.raises(InvalidInput):
        await request(store, deadline_s=0)
    with pytest.raises(InvalidInput):
        await request(store, fare=float("nan"))
    with pytest.raises(InvalidInput):
        await store.decline("r1", "d1", reason="bored")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.cancel("r1", by="admin", actor_id="x")  # type: ignore[arg-type]


# --- fencing and redelivery ----------------------------------------------------------------


async def test_stale_expected_version_is_refused(store: RideStore, stream: Stream) -> None:
    """A matcher that read version 1 may not offer after the ride was offered and declined
    meanwhile (status `requested` again, version 3): its late step writes nothing."""
    seen = await request(store)
    await store.set_driver_status("d1", "available")
    await store.set_driver_status("d2", "available")
    await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    await store.decline("r1", "d1")
    await stream.new()
    late = await store.offer(
        ride_id="r1",
        driver_id="d2",
        pickup_eta_s=60,
        offer_timeout_s=30,
        expected_version=seen.version,
    )
    assert late is None
    assert await stream.new() == []
    current = await store.get("r1")
    driver = await store.get_driver("d2")
    assert current is not None and (current.status, current.version) == ("requested", 3)
    assert driver is not None and driver.status == "available"
    fresh = await store.offer(
        ride_id="r1", driver_id="d2", pickup_eta_s=60, offer_timeout_s=30, expected_version=3
    )
    assert fresh is not None and fresh.offer_driver_id == "d2"


async def test_stale_expiry_is_refused_once_the_ride_was_requeued(store: RideStore) -> None:
    seen = await request(store, deadline_s=1.0)  # offered and declined before the deadline
    await store.set_driver_status("d1", "available")
    await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    requeued = await store.decline("r1", "d1")

    async def overdue() -> bool:
        return (await store.expire("r1", expected_version=seen.version)) is None and (
            await redis_now_ms(store) > requeued.deadline_at
        )

    await wait_until(overdue, timeout_s=5, what="the deadline to pass")
    current = await store.get("r1")
    assert current is not None and current.status == "requested", "the stale expiry wrote nothing"
    expired = await store.expire("r1", expected_version=requeued.version)
    assert expired is not None and expired.status == "expired"


async def test_redelivered_offer_with_same_event_id_appends_no_second_event(
    store: RideStore, stream: Stream
) -> None:
    await request(store)
    await store.set_driver_status("d1", "available")
    event_id = derived_event_id("entry-1", "offer")
    first = await store.offer(
        ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30, event_id=event_id
    )
    again = await store.offer(
        ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30, event_id=event_id
    )
    assert first is not None and again == first
    await store.accept("r1", "d1")
    late = await store.offer(
        ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30, event_id=event_id
    )
    assert late is not None and late.status == "matched", "a late redelivery is still a no-op"
    offered = [e for e in await stream.all() if e.type == "ride.offered"]
    assert [e.id for e in offered] == [event_id]


async def test_redelivered_timeout_after_a_reoffer_is_a_no_op(
    store: RideStore, stream: Stream
) -> None:
    await request(store, "r1")
    await store.set_driver_status("d1", "available")
    offered = await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=0.05)
    assert offered is not None
    await past_offer_expiry(store, offered)
    await store.set_driver_status("d2", "available")
    timeout_id = derived_event_id("offer-entry", "timeout")
    await store.decline("r1", "d1", reason="timeout", event_id=timeout_id)
    await store.offer(ride_id="r1", driver_id="d2", pickup_eta_s=60, offer_timeout_s=30)
    again = await store.decline("r1", "d1", reason="timeout", event_id=timeout_id)
    assert again.status == "offered" and again.offer_driver_id == "d2"
    unmatched = [e for e in await stream.all() if e.type == "ride.unmatched"]
    assert len(unmatched) == 1 and unmatched[0].payload(RideUnmatchedV1).reason == "timeout"


async def test_idempotency_key_returns_the_same_ride(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    first, created = await store.request_ride(
        ride_id="r1",
        rider_id="u1",
        pickup=PICKUP,
        dropoff=DROPOFF,
        deadline_s=60,
        idempotency_key="k-1",
    )
    second, created_again = await store.request_ride(
        ride_id="r2",
        rider_id="u1",
        pickup=PICKUP,
        dropoff=DROPOFF,
        deadline_s=60,
        idempotency_key="k-1",
    )
    assert created and not created_again and second == first
    assert await store.get("r2") is None
    assert len(await stream.all()) == 1
    ttl = await redis.ttl(keys.idempotency("u1", "k-1"))
    assert 86_000 < ttl <= 86_400


async def test_reused_ride_id_conflicts_unless_it_is_the_same_event(store: RideStore) -> None:
    kw: dict[str, Any] = {"ride_id": "r1", "rider_id": "u1", "pickup": PICKUP, "dropoff": DROPOFF}
    await store.request_ride(**kw, deadline_s=60, event_id="e-1")
    ride, created = await store.request_ride(**kw, deadline_s=60, event_id="e-1")
    assert not created and ride.ride_id == "r1"
    with pytest.raises(Conflict, match="ride r1 already exists"):
        await store.request_ride(**kw, deadline_s=60)


# --- offers, declines, cancels, expiry -----------------------------------------------------


async def test_offer_returns_none_for_busy_driver_or_taken_ride(
    store: RideStore, stream: Stream
) -> None:
    await ride_at(store, "offered")
    await request(store, "r2")
    await store.set_driver_status("d2", "available")
    await store.set_driver_status("d3", "offline")
    await stream.new()
    assert (
        await store.offer(ride_id="r2", driver_id="d1", pickup_eta_s=1, offer_timeout_s=5) is None
    )
    assert (
        await store.offer(ride_id="r2", driver_id="d3", pickup_eta_s=1, offer_timeout_s=5) is None
    )
    assert (
        await store.offer(ride_id="r2", driver_id="ghost", pickup_eta_s=1, offer_timeout_s=5)
        is None
    )
    assert (
        await store.offer(ride_id="r1", driver_id="d2", pickup_eta_s=1, offer_timeout_s=5) is None
    )
    assert await stream.new() == []


@pytest.mark.parametrize("reason", ["declined", "timeout"])
async def test_decline_returns_driver_to_available_and_ride_to_requested(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream, reason: str
) -> None:
    offered = await ride_at(store, "offered", offer_timeout_s=0.05 if reason == "timeout" else 30)
    if reason == "timeout":
        await past_offer_expiry(store, offered)
    await stream.new()
    ride = await store.decline("r1", "d1", reason=reason)  # type: ignore[arg-type]
    assert (ride.status, ride.offer_driver_id, ride.declined, ride.attempt) == (
        "requested",
        None,
        ("d1",),
        1,
    )
    assert ride.deadline_at == offered.deadline_at, "a decline keeps the rider's deadline"
    assert [s for s, _ in ride.timeline] == ["requested"]
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("available", None)
    assert await redis.zscore(keys.open_rides, "r1") == ride.deadline_at
    assert await redis.zscore(keys.offer_timeouts, "r1") is None
    assert await redis.hget(keys.ride_counts, "unmatched") == b"1"
    [event] = await stream.new()
    assert event.type == "ride.unmatched"
    assert event.data.model_dump() == {
        "ride_id": "r1",
        "driver_id": "d1",
        "reason": reason,
        "version": 3,
        "cause": None,
    }
    await store.set_driver_status("d2", "available")
    again = await store.offer(ride_id="r1", driver_id="d2", pickup_eta_s=1, offer_timeout_s=5)
    assert again is not None and again.attempt == 2 and again.declined == ("d1",)


async def test_accept_racing_the_offer_timeout_has_exactly_one_winner(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    rides = [f"r{i}" for i in range(20)]
    for i, ride_id in enumerate(rides):
        await ride_at(store, "offered", ride_id, f"d{i}")
    results = await asyncio.gather(
        *(
            call
            for i, ride_id in enumerate(rides)
            for call in (
                store.accept(ride_id, f"d{i}"),
                store.decline(ride_id, f"d{i}", reason="timeout"),
            )
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Ride)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert (len(wins), len(losses)) == (20, 20), results
    await assert_consistent(store, redis, keys, rides, [f"d{i}" for i in range(20)])


@pytest.mark.parametrize("status", ["requested", "offered", "matched", "driver_arrived"])
async def test_rider_cancel_frees_the_driver(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream, status: str
) -> None:
    await ride_at(store, status)
    await stream.new()
    ride = await store.cancel("r1", by="rider", actor_id="u1")
    assert (ride.status, ride.cancelled_by, ride.timeline[-1][0]) == (
        "cancelled",
        "rider",
        "cancelled",
    )
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("available", None)
    [event] = await stream.new()
    cancelled = event.payload(RideCancelledV1)
    assert cancelled.by == "rider"
    assert cancelled.driver_id == (None if status == "requested" else "d1")
    await assert_consistent(store, redis, keys, ["r1"], ["d1"])


async def test_rider_cannot_cancel_a_started_trip_but_ops_can(store: RideStore) -> None:
    await ride_at(store, "started")
    with pytest.raises(Conflict, match=r"^ride is started; cannot cancel$"):
        await store.cancel("r1", by="rider", actor_id="u1")
    ride = await store.cancel("r1", by="ops", actor_id="ops1")
    assert (ride.status, ride.cancelled_by) == ("cancelled", "ops")
    driver = await store.get_driver("d1")
    assert driver is not None and driver.status == "available"


async def test_rider_cannot_cancel_another_riders_ride(store: RideStore) -> None:
    await request(store)
    with pytest.raises(Forbidden):
        await store.cancel("r1", by="rider", actor_id="someone-else")
    ride = await store.get("r1")
    assert ride is not None and ride.status == "requested"


@pytest.mark.parametrize("status", ["matched", "driver_arrived"])
async def test_driver_cancel_returns_ride_to_requested(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream, status: str
) -> None:
    before = await ride_at(store, status)
    await stream.new()
    ride = await store.cancel("r1", by="driver", actor_id="d1")
    assert (ride.status, ride.driver_id, ride.declined) == ("requested", None, ("d1",))
    assert ride.deadline_at > before.deadline_at, "the rider gets a fresh wait window"
    assert [s for s, _ in ride.timeline] == ["requested"]
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("available", None)
    [event] = await stream.new()
    assert event.payload(RideUnmatchedV1).reason == "driver_cancelled"
    assert await redis.zscore(keys.open_rides, "r1") == ride.deadline_at
    await assert_consistent(store, redis, keys, ["r1"], ["d1"])


async def test_driver_cannot_cancel_an_offer_or_a_ride_not_theirs(store: RideStore) -> None:
    await ride_at(store, "offered")
    with pytest.raises(Conflict, match=r"^ride is offered; cannot cancel as driver$"):
        await store.cancel("r1", by="driver", actor_id="d1")
    await store.accept("r1", "d1")
    with pytest.raises(Conflict, match="with another driver"):
        await store.cancel("r1", by="driver", actor_id="d9")


async def test_expire_waits_for_the_deadline_then_ends_the_ride(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    await request(store, deadline_s=0.3)
    await stream.new()
    assert await store.expire("r1") is None, "not due yet"

    async def expired() -> Ride | None:
        return await store.expire("r1")

    ride = await wait_until(expired, timeout_s=5, what="r1 to expire")
    assert ride is not None and ride.status == "expired" and ride.timeline[-1][0] == "expired"
    assert await store.expire("r1") is None, "no longer requested"
    [event] = await stream.new()
    assert event.payload(RideExpiredV1).version == 2
    for index in (keys.open_rides, keys.active_rides):
        assert await redis.zscore(index, "r1") is None


async def past_deadline(store: RideStore, ride: Ride) -> None:
    """Wait until the server clock reaches the ride's deadline (no offer may be made then)."""

    async def overdue() -> bool:
        return await redis_now_ms(store) >= ride.deadline_at

    await wait_until(overdue, timeout_s=10, what="the ride's deadline to pass")


async def test_offer_past_the_deadline_offers_nobody_and_expires_the_ride(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    ride = await request(store, deadline_s=0.2)
    await store.set_driver_status("d1", "available")
    await past_deadline(store, ride)
    await stream.new()
    offered = await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    assert offered is None, f"a ride past its deadline was offered: {offered}"
    current = await store.get("r1")
    assert current is not None and current.status == "expired", current
    assert current.offer_driver_id is None and current.attempt == 0
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("available", None)
    events = await stream.new()
    assert [e.type for e in events] == ["ride.expired"], events
    assert events[0].payload(RideExpiredV1).version == 2
    assert events[0].id == derived_event_id("r1", "expire"), "the sweeper's own expiry id"
    for index in (keys.open_rides, keys.offer_timeouts, keys.active_rides):
        assert await redis.zscore(index, "r1") is None, index
    await assert_consistent(store, redis, keys, ["r1"], ["d1"])


@pytest.mark.parametrize("reason", ["declined", "timeout"])
async def test_offer_declined_or_timed_out_past_the_deadline_expires_the_ride(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream, reason: str
) -> None:
    """The offer in flight at the deadline runs its course; unanswered or declined, the ride
    expires in the same step instead of waiting for another offer (a consumer would make one
    before the sweeper's expiry could run: rides bounced between drivers for a minute)."""
    ride = await request(store, deadline_s=1.5)
    await store.set_driver_status("d1", "available")
    await store.set_driver_status("d2", "available")
    offered = await store.offer(
        ride_id="r1",
        driver_id="d1",
        pickup_eta_s=60,
        offer_timeout_s=0.05 if reason == "timeout" else 30,
    )
    assert offered is not None and offered.status == "offered"
    await past_deadline(store, ride)
    if reason == "timeout":
        await past_offer_expiry(store, offered)
    await stream.new()
    after = await store.decline("r1", "d1", reason=reason)  # type: ignore[arg-type]
    assert after.status == "expired", f"expected the ride expired past its deadline: {after}"
    assert [s for s, _ in after.timeline] == ["requested", "expired"]
    unmatched, expired = await stream.new()
    assert unmatched.payload(RideUnmatchedV1).reason == reason
    assert expired.payload(RideExpiredV1).version == unmatched.payload(RideUnmatchedV1).version + 1
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("available", None)
    again = await store.offer(ride_id="r1", driver_id="d2", pickup_eta_s=1, offer_timeout_s=5)
    assert again is None and await stream.new() == [], "an expired ride is offered to nobody"
    assert await store.expire("r1") is None, "already expired: the sweeper finds nothing to do"
    await assert_consistent(store, redis, keys, ["r1"], ["d1", "d2"])


async def test_driver_cancel_past_the_deadline_still_gives_the_rider_a_fresh_wait(
    store: RideStore, stream: Stream
) -> None:
    ride = await request(store, deadline_s=1.5)
    await store.set_driver_status("d1", "available")
    await store.offer(ride_id="r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)
    await store.accept("r1", "d1")
    await past_deadline(store, ride)
    requeued = await store.cancel("r1", by="driver", actor_id="d1")
    assert requeued.status == "requested" and requeued.deadline_at > ride.deadline_at
    await store.set_driver_status("d2", "available")
    offered = await store.offer(ride_id="r1", driver_id="d2", pickup_eta_s=1, offer_timeout_s=5)
    assert offered is not None and offered.status == "offered"


# --- drivers, ETAs, public view ------------------------------------------------------------


async def test_driver_status_changes_emit_driver_status_once(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    first = await store.set_driver_status("d1", "available")
    again = await store.set_driver_status("d1", "available")
    assert first == again and (first.status, first.version) == ("available", 1)
    offline = await store.set_driver_status("d1", "offline")
    assert (offline.status, offline.version) == ("offline", 2)
    events = await stream.new()
    assert [(e.type, e.envelope.subject, e.data.model_dump()) for e in events] == [
        ("driver.status", "driver/d1", {"driver_id": "d1", "status": "available", "version": 1}),
        ("driver.status", "driver/d1", {"driver_id": "d1", "status": "offline", "version": 2}),
    ]
    assert await redis.hget(keys.driver_statuses, "d1") == b"offline"


async def test_driver_holding_a_ride_cannot_go_offline(store: RideStore) -> None:
    await ride_at(store, "matched")
    with pytest.raises(Conflict, match=r"^driver is en_route; cannot go offline$"):
        await store.set_driver_status("d1", "offline")
    with pytest.raises(Conflict, match=r"^driver is en_route; cannot become available$"):
        await store.set_driver_status("d1", "available")


async def test_set_eta_updates_fields_without_event_or_version(
    store: RideStore, stream: Stream
) -> None:
    await ride_at(store, "matched")
    await stream.new()
    await store.set_eta("r1", pickup_eta_s=42.04, trip_eta_s=600)
    await store.set_eta("unknown", pickup_eta_s=1)
    ride = await store.get("r1")
    assert ride is not None and (ride.pickup_eta_s, ride.trip_eta_s, ride.version) == (
        42.0,
        600.0,
        3,
    )
    assert await stream.new() == []
    assert await store.get("unknown") is None


async def test_public_view_is_json_ready_with_an_ordered_timeline(store: RideStore) -> None:
    ride = await ride_at(store, "driver_arrived")
    public = orjson.loads(orjson.dumps(ride.to_public()))
    assert public["status"] == "driver_arrived" and public["driver_id"] == "d1"
    assert public["pickup"] == {"lat": PICKUP.lat, "lon": PICKUP.lon}
    assert [t["status"] for t in public["timeline"]] == [
        "requested",
        "offered",
        "matched",
        "driver_arrived",
    ]
    assert "declined" not in public and "offer_driver_id" not in public


# --- concurrency -------------------------------------------------------------------------


async def test_concurrent_offers_never_give_a_driver_two_rides(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    """50 rides race for 20 drivers, each request handled twice (a redelivery on a second
    consumer, same event ids), in seeded random order; then half decline and all rematch."""
    rng = random.Random(20240611)
    rides = [f"r{i}" for i in range(50)]
    drivers = [f"d{j}" for j in range(20)]
    await asyncio.gather(*(request(store, r, f"u{r}") for r in rides))
    await asyncio.gather(*(store.set_driver_status(d, "available") for d in drivers))

    async def match(ride_id: str, candidates: list[str], round_: int) -> None:
        ride = await store.get(ride_id)
        for driver_id in candidates:
            if ride is None or ride.status != "requested" or driver_id in ride.declined:
                return
            offered = await store.offer(
                ride_id=ride_id,
                driver_id=driver_id,
                pickup_eta_s=60,
                offer_timeout_s=30,
                expected_version=ride.version,
                event_id=derived_event_id(f"{ride_id}/{round_}", driver_id),
            )
            if offered is not None:
                return

    async def match_all(round_: int) -> None:
        jobs = []
        for ride_id in rides:
            candidates = rng.sample(drivers, len(drivers))
            jobs += [match(ride_id, candidates, round_), match(ride_id, candidates, round_)]
        rng.shuffle(jobs)
        await asyncio.gather(*jobs)

    await match_all(1)
    offers = [e for e in await stream.new() if e.type == "ride.offered"]
    per_driver = Counter(e.payload(RideOfferedV1).driver_id for e in offers)
    per_ride = Counter(e.payload(RideOfferedV1).ride_id for e in offers)
    assert sorted(per_driver) == sorted(drivers) and set(per_driver.values()) == {1}, per_driver
    assert set(per_ride.values()) == {1} and len(per_ride) == 20
    await assert_consistent(store, redis, keys, rides, drivers)

    held = {d: (await store.get_driver(d)) for d in drivers}
    steps = [
        store.accept(h.ride_id, d) if i % 2 else store.decline(h.ride_id, d)
        for i, (d, h) in enumerate(sorted(held.items()))
        if h is not None and h.ride_id is not None
    ]
    await asyncio.gather(*steps)
    await match_all(2)
    offers = [e for e in await stream.new() if e.type == "ride.offered"]
    assert len(offers) == 10, "only the 10 drivers who declined are free again"
    for event in offers:
        offer = event.payload(RideOfferedV1)
        ride = await store.get(offer.ride_id)
        assert ride is not None and offer.driver_id not in ride.declined
    await assert_consistent(store, redis, keys, rides, drivers)


OPERATIONS = [*TRANSITIONS, "driver"]
# Steps that find the ride past its deadline expire it instead (after their own event, if any):
# an offer is not made, a declined or timed-out offer does not send the ride back to waiting.
EXPIRE_WHEN_OVERDUE = {"offer": 0, "decline": 1}  # action → events of its own before ride.expired


async def operate(
    store: RideStore, name: str, ride_id: str, driver_id: str, rng: random.Random
) -> object:
    """One operation of the random walk, by table action name (or "driver" for a status)."""
    ops: dict[str, Callable[[], Awaitable[object]]] = {
        "request": lambda: store.request_ride(
            ride_id=ride_id,
            rider_id="u",
            pickup=PICKUP,
            dropoff=DROPOFF,
            # the long choices outlast any run, so only the 1 ms ones expire: the walk takes the
            # same path on a slow machine as on a fast one
            deadline_s=rng.choice([0.001, 3600, 3600]),
        ),
        "offer": lambda: store.offer(
            ride_id=ride_id,
            driver_id=driver_id,
            pickup_eta_s=5,
            offer_timeout_s=rng.choice([0.001, 3600, 3600]),  # some expire at once (server clock)
        ),
        "accept": lambda: store.accept(ride_id, driver_id),
        "decline": lambda: store.decline(
            ride_id, driver_id, reason=rng.choice(["declined", "timeout"])
        ),
        "arrive": lambda: store.arrived(ride_id, driver_id),
        "start": lambda: store.start(ride_id, driver_id),
        "complete": lambda: store.complete(ride_id, driver_id),
        "cancel_by_rider": lambda: store.cancel(
            ride_id, by="rider", actor_id=rng.choice(["u", "u", "x"])
        ),
        "cancel_by_driver": lambda: store.cancel(ride_id, by="driver", actor_id=driver_id),
        "cancel_by_ops": lambda: store.cancel(ride_id, by="ops", actor_id="ops"),
        "expire": lambda: store.expire(ride_id),
        # the store picks the row (lose_driver / lose_driver_on_trip) from the ride's status
        "lose_driver": lambda: store.lose_driver(
            ride_id, driver_id, silence_s=rng.choice([0.001, 3600])
        ),
        "lose_driver_on_trip": lambda: store.lose_driver(
            ride_id, driver_id, silence_s=rng.choice([0.001, 3600])
        ),
        "driver": lambda: store.set_driver_status(
            driver_id, rng.choice(["available", "available", "offline"])
        ),
    }
    return await ops[name]()


async def test_random_operation_sequences_keep_projections_consistent(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys, stream: Stream
) -> None:
    """A seeded random walk of every operation, right or wrong actor, checked against the
    table: applied steps append exactly one event, refused ones none, invariants always hold."""
    rng = random.Random(13)
    rides: list[str] = []
    drivers = [f"d{j}" for j in range(4)]
    for j, d in enumerate(drivers[:3]):  # the last driver never pinged: it has no position
        await pinged(redis, keys, d, pack_position(PICKUP.lat + j * 0.001, PICKUP.lon, 1))
    for d in drivers:
        await store.set_driver_status(d, "available")
    await stream.new()
    applied = 0
    for n in range(500):
        live = sorted(await members(redis, keys.active_rides))
        if len(live) < 3 or rng.random() < 0.03:
            rides.append(f"r{len(rides)}")  # fresh rides keep the walk moving
            live.append(rides[-1])
        ride_id = rng.choice(live) if rng.random() < 0.9 else rng.choice(rides)
        current = await store.get(ride_id)
        own = current.driver_id or current.offer_driver_id if current else None
        statuses = await hash_of(redis, keys.driver_statuses)
        free = [d for d in drivers if statuses.get(d) == "available"]
        candidate = own if own and current and current.status in DRIVER_STATUS_OF_RIDE else None
        if candidate is None and free:
            candidate = rng.choice(free)
        driver_id = candidate if candidate and rng.random() < 0.8 else rng.choice(drivers)
        # Mostly what the table allows now (so rides get far), sometimes anything (refusals).
        likely: list[str] = sorted(allowed_actions(current.status)) if current else ["request"]
        likely = [a for a in likely if not a.startswith("cancel") or rng.random() < 0.1]
        roll = rng.random()
        name = (
            "driver"
            if roll < 0.1
            else rng.choice(likely or OPERATIONS)
            if roll < 0.85
            else rng.choice(OPERATIONS)
        )
        before = await store.get(ride_id)
        driver_before = await store.get_driver(driver_id)
        overdue = before is not None and before.deadline_at <= await redis_now_ms(store)
        try:
            result = await operate(store, name, ride_id, driver_id, rng)
        except RidePulseError:
            result = None
        # Past every 1 ms timer just set (server and test share the clock), so whether it has
        # expired by the next step never depends on the machine's speed: the walk is the seed's.
        await asyncio.sleep(0.002)
        after, driver_after = await store.get(ride_id), await store.get_driver(driver_id)
        changed = (before and before.version) != (after and after.version) or (
            driver_before and driver_before.version
        ) != (driver_after and driver_after.version)
        new = await stream.new()
        expires = overdue and name in EXPIRE_WHEN_OVERDUE and after is not None and after != before
        events = 1 + EXPIRE_WHEN_OVERDUE[name] if expires else 1 if changed else 0
        assert len(new) == events, (n, name, before, after, new)
        applied += len(new)
        if after is not None and (before is None or after.version != before.version):
            assert name in TRANSITIONS, name
            if name.startswith("lose_driver"):
                name = "lose_driver_on_trip" if before and before.status == "started" else name
                name = "lose_driver" if before and before.status != "started" else name
            expected = next_status(name, before.status if before else None)
            expected = "expired" if expires else expected
            assert after.status == expected, f"{name} took {before} to {after.status}"
        elif result is None:
            assert after == before
        if n % 25 == 0:
            await assert_consistent(store, redis, keys, rides, drivers)
    await assert_consistent(store, redis, keys, rides, drivers)
    counts = {k: int(v) for k, v in (await hash_of(redis, keys.ride_counts)).items()}
    # the seed's walk (196 steps applied, 6 trips completed) reaches every corner of the table
    assert applied > 150 and counts.get("completed", 0) >= 5, (applied, counts)
