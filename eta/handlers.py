"""eta's handlers: ride events start and end the phases whose ETA is kept fresh; telemetry
teaches the speed model and moves the ETAs of drivers on an active ride, throttled.

Rides are tracked from ride.matched (pickup phase) to ride.driver_arrived, and from
ride.started (trip phase) to ride.completed; ride.cancelled and ride.unmatched (the driver gave
the ride back) end either. ride.expired is not handled: only a ride still `requested` expires,
and such a ride has no driver and no ETA to track."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from eta.active import ActiveRide, Phase
from eta.announce import estimate, write_and_announce
from eta.deps import EtaDeps
from eta.model import eta_should_update
from eta.positions import last_position
from ridepulse.bus.handlers import HandlerTable, Outgoing
from ridepulse.contracts.envelope import derived_event_id
from ridepulse.contracts.events import (
    DriverLocationV1,
    RideCancelledV1,
    RideCompletedV1,
    RideDriverArrivedV1,
    RideMatchedV1,
    RideStartedV1,
    RideUnmatchedV1,
)
from ridepulse.contracts.registry import Event
from ridepulse.contracts.telemetry_decode import PingLike
from ridepulse.rides.state import RideStatus

RideEnding = RideDriverArrivedV1 | RideCompletedV1 | RideCancelledV1 | RideUnmatchedV1


async def _begin(
    event: Event, deps: EtaDeps, status: RideStatus, fallback_eta_s: float | None
) -> Outgoing:
    """Track the ride from now on and announce its first ETA of the phase."""
    deps.require(event.market)  # leased: another replica's market stays pending for it
    begun = event.payload(RideMatchedV1, RideStartedV1)
    ride_id, driver_id = begun.ride_id, begun.driver_id
    store = deps.stores.get(event.market)
    if store is None:
        return None
    ride = await store.get(ride_id)
    if ride is None or ride.status != status or ride.driver_id != driver_id:
        return None  # replayed or late: the ride has moved on, and its later events say where
    active = ActiveRide.of(ride)
    if active is None:
        return None
    deps.rides.track(active)
    fresh_after = event.envelope.time - int(deps.settings.driver_stale_s * 1000)
    position = await last_position(deps.redis, store.keys, driver_id, not_before_ms=fresh_after)
    if position is not None:
        active.last_ping_ts = position.ts
        eta_s = estimate(deps, active, position.lat, position.lon)
    elif active.phase == "trip":  # no recent fix: a trip starts at the pickup
        eta_s = estimate(deps, active, ride.pickup.lat, ride.pickup.lon)
    elif fallback_eta_s is not None:
        eta_s = fallback_eta_s
    else:
        return None  # no position yet: the driver's first ping will give the first ETA
    await write_and_announce(deps, [(active, eta_s, derived_event_id(event.id, "eta"))])
    return None


async def on_matched(event: Event, deps: EtaDeps) -> Outgoing:
    return await _begin(event, deps, "matched", event.payload(RideMatchedV1).pickup_eta_s)


async def on_started(event: Event, deps: EtaDeps) -> Outgoing:
    return await _begin(event, deps, "started", None)


def _ending(
    phase: Phase | None, model: type[RideEnding]
) -> Callable[[Event, EtaDeps], Awaitable[Outgoing]]:
    """A handler of `model` events that stops tracking a ride, if it is (still) in `phase`
    (None: any phase) — so a late driver_arrived never ends a trip that has already started."""

    async def forget(event: Event, deps: EtaDeps) -> Outgoing:
        deps.require(event.market)
        ride_id = event.payload(model).ride_id
        active = deps.rides.of_ride(ride_id)
        if active is not None and (phase is None or active.phase == phase):
            deps.rides.forget_ride(ride_id)
        return None

    return forget


def _newest_tracked(events: Sequence[Event], deps: EtaDeps) -> dict[str, tuple[PingLike, str]]:
    """Learn from every ping; keep the newest ping (and its event id) of each tracked driver."""
    newest: dict[str, tuple[PingLike, str]] = {}
    for event in events:
        deps.require(event.market)
        pings = event.payload(DriverLocationV1).pings
        model = deps.models.get(event.market)
        if model is None:
            continue
        if model.observe_batch(pings):
            deps.learned.add(event.market)
        for ping in pings:
            if deps.rides.of_driver(ping.driver_id) is None:
                continue
            held = newest.get(ping.driver_id)
            if held is None or ping.ts > held[0].ts:
                newest[ping.driver_id] = (ping, event.id)
    return newest


async def on_locations(events: Sequence[Event], deps: EtaDeps) -> Outgoing:
    now = deps.clock()
    due: list[tuple[ActiveRide, float, str]] = []
    for driver_id, (ping, cause_id) in _newest_tracked(events, deps).items():
        active = deps.rides.of_driver(driver_id)
        if active is None or ping.ts <= active.last_ping_ts:
            continue  # an older fix than one already used (redelivery, reordering)
        active.last_ping_ts = ping.ts
        eta_s = estimate(deps, active, ping.lat, ping.lon)
        if eta_should_update(active.last_eta_s, eta_s, active.last_sent_ms, now):
            due.append((active, eta_s, cause_id))
    updates = [
        (active, eta_s, derived_event_id(cause_id, f"eta:{active.ride_id}"))
        for active, eta_s, cause_id in due
    ]
    if updates:
        await write_and_announce(deps, updates)
    return None


HANDLERS = HandlerTable(
    per_event={
        "ride.matched": on_matched,
        "ride.driver_arrived": _ending("pickup", RideDriverArrivedV1),
        "ride.started": on_started,
        "ride.completed": _ending("trip", RideCompletedV1),
        "ride.cancelled": _ending(None, RideCancelledV1),
        "ride.unmatched": _ending(None, RideUnmatchedV1),
    },
)
TELEMETRY_HANDLERS = HandlerTable(batch={"driver.location": on_locations})
