"""RideStore: every move of a ride or driver, each one atomic step (a Lua script) that checks
the state, writes the projections and appends the announcing event together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ridepulse.bus.metrics import EVENTS_PUBLISHED
from ridepulse.contracts.envelope import derived_event_id, new_event_id
from ridepulse.contracts.events import Point
from ridepulse.errors import InvalidInput, NotFound, RateLimited
from ridepulse.keys import MarketKeys
from ridepulse.rides import inputs
from ridepulse.rides.outcome import Outcome, driver_result, refusal, ride_result
from ridepulse.rides.projection import Driver, Ride, decode_hash
from ridepulse.rides.scripts import Scripts, step_argv, step_keys
from ridepulse.rides.state import (
    ASSIGNMENT_TIMESTAMPS,
    DRIVER_HOLDS_RIDE,
    DRIVER_TRANSITIONS,
    TRANSITIONS,
    RideAction,
)
from ridepulse.settings import DRIVER_STALE_S

IDEMPOTENCY_TTL_S = 24 * 3600
MAX_IDEMPOTENCY_KEY = 128  # characters; the API documents the same bound on the header
OPEN_RIDES_RETRY_AFTER_S = 10  # a waiting ride finds a driver or expires within a minute
QUOTE_REFUSALS = {
    "unknown": ("quote_id", "quote expired or unknown; ask for a new quote"),
    "rider": ("quote_id", "quote belongs to another rider"),
    "used": ("quote_id", "quote already used for another ride; ask for a new quote"),
    "pickup": ("pickup", "pickup is not where the quote was for; ask for a new quote"),
    "dropoff": ("dropoff", "dropoff is not where the quote was for; ask for a new quote"),
}

# Runs a registered script (keys, args) somewhere specific, e.g. on one pinned connection so
# that a WAITAOF after it covers its write (ingest.durability).
ScriptRunner = Callable[[AsyncScript, list[str], list[str]], Awaitable[Any]]
CANCEL_ATTEMPTS = 5  # re-reads when the ride changes driver between our read and our step


@dataclass(frozen=True)
class MarketLeft:
    """What a market's leave step did (RideStore.leave_market)."""

    kept: list[str] = field(default_factory=list)  # hold a ride or an offer here: they stay
    carried: list[str] = field(default_factory=list)  # were available here, now offline
    left_at_ms: int = 0  # the step's server time


class RideStore:
    """The ride and driver state machine over Redis, shared by ingest and matching.

    Steps that a consumer may re-run after redelivery take an `event_id` (derive it from the
    cause with contracts.derived_event_id): a step already applied with that id returns the
    current ride and appends nothing. `expected_version` fences out a caller that read a ride
    which has moved since (DESIGN §11): its step is refused and returns None."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: MarketKeys,
        source: str,
        *,
        driver_stale_s: float = DRIVER_STALE_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.source = source
        # a driver silent this long goes available unindexed (ingest, which sets statuses,
        # passes settings.driver_stale_s)
        self.driver_stale_s = driver_stale_s
        self.scripts = Scripts.register(redis)

    async def _step(
        self,
        script: AsyncScript,
        action: RideAction,
        ride_id: str,
        *,
        driver_id: str = "",
        event_id: str | None = None,
        expected_version: int | None = None,
        extra_keys: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        run: ScriptRunner | None = None,
    ) -> Outcome:
        argv = step_argv(
            TRANSITIONS[action],
            event_id=event_id or new_event_id(),
            source=self.source,
            ride_id=ride_id,
            driver_id=driver_id,
            expected_version=expected_version,
        )
        keys = [*step_keys(self.keys, ride_id), *extra_keys]
        args = [*argv, *extra_args]
        reply: list[bytes] = await (
            run(script, keys, args) if run else script(keys=keys, args=args)
        )
        outcome = Outcome.from_reply(reply)
        self._published(outcome.appended)
        return outcome

    def _published(self, appended: int) -> None:
        """Count what a step appended to the rides stream: the steps write their events
        themselves, inside the script, so no Producer sees them."""
        if appended:
            EVENTS_PUBLISHED.labels(self.keys.rides).inc(appended)

    async def _driver_step(
        self,
        script: AsyncScript,
        action: RideAction,
        ride_id: str,
        driver_id: str,
        *,
        event_id: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> Ride:
        """A step the ride's own driver takes: the driver key joins the script's KEYS."""
        inputs.checked_id("driver_id", driver_id)
        outcome = await self._step(
            script,
            action,
            ride_id,
            driver_id=driver_id,
            event_id=event_id,
            extra_keys=[self.keys.driver(driver_id)],
            extra_args=extra_args,
        )
        return self._ride(outcome, ride_id, action)

    def _chained(self, action: RideAction, ride_id: str) -> list[str]:
        """ARGV of a step a script takes after its own when due (an overdue ride's `expire`).
        Its event id is the sweeper's for the same step, so the ride takes it once either way."""
        return step_argv(
            TRANSITIONS[action],
            event_id=derived_event_id(ride_id, action),
            source=self.source,
            ride_id=ride_id,
        )

    @staticmethod
    def _ride(outcome: Outcome, ride_id: str, action: RideAction) -> Ride:
        """The ride after a step that must apply: every refusal raises (naming the state)."""
        verb = TRANSITIONS[action].verb
        ride = ride_result(outcome, ride_id=ride_id, verb=verb)
        if ride is None:
            raise refusal(outcome, ride_id=ride_id, verb=verb)
        return ride

    # --- rider -------------------------------------------------------------------------

    async def request_ride(
        self,
        *,
        ride_id: str,
        rider_id: str,
        pickup: Point,
        dropoff: Point,
        deadline_s: float,
        idempotency_key: str | None = None,
        body_hash: str = "",
        quote_id: str | None = None,
        pickup_cells: Sequence[str] = (),
        dropoff_cells: Sequence[str] = (),
        fare: float | None = None,
        surge: float | None = None,
        open_rides_limit: int = 0,
        event_id: str | None = None,
        run: ScriptRunner | None = None,
    ) -> tuple[Ride, bool]:
        """Create a ride waiting for a driver until `deadline_s` from now, and False instead
        when this rider's `idempotency_key` (24 h) already made one: that ride is returned.

        Checked atomically, in this order: the idempotency key (the same key with another
        `body_hash` → InvalidInput on idempotency_key), the rider's open rides (at most
        `open_rides_limit`, 0 = no limit → RateLimited), the quote (this rider's, unused, its
        pickup/dropoff cells among `pickup_cells`/`dropoff_cells` → InvalidInput naming the
        field). A quoted ride takes fare and surge from the quote and uses it up."""
        inputs.checked_id("ride_id", ride_id)
        inputs.checked_id("rider_id", rider_id)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(
                f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters",
                field="idempotency_key",
            )
        extra_keys = [
            self.keys.rider_rides(rider_id),
            self.keys.rider_open_rides(rider_id),
            self.keys.idempotency(rider_id, idempotency_key or ""),
            self.keys.quote(quote_id or ""),
        ]
        extra_args = [
            rider_id,
            self.keys.market,
            *inputs.coordinates(pickup),
            *inputs.coordinates(dropoff),
            inputs.millis("deadline_s", deadline_s),
            quote_id or "",
            inputs.number("fare", fare, inputs.MONEY_DIGITS),
            inputs.number("surge", surge, inputs.SURGE_DIGITS, strict=True),
            str(IDEMPOTENCY_TTL_S),
            "1" if idempotency_key is not None else "0",
            body_hash,
            str(open_rides_limit),
            ",".join(pickup_cells),
            ",".join(dropoff_cells),
        ]
        outcome = await self._step(
            self.scripts.request_ride,
            "request",
            ride_id,
            event_id=event_id,
            extra_keys=extra_keys,
            extra_args=extra_args,
            run=run,
        )
        if outcome.code == "exists":
            existing = await self.get(outcome.detail)
            if existing is None:
                raise NotFound(f"ride {outcome.detail} of this idempotency key not found")
            return existing, False
        if outcome.code == "idempotency":
            raise InvalidInput(
                "this Idempotency-Key was used with another request body", field="idempotency_key"
            )
        if outcome.code == "limit":
            raise RateLimited(
                f"{outcome.detail} open ride(s) already; at most {open_rides_limit} at once",
                retry_after_s=OPEN_RIDES_RETRY_AFTER_S,
            )
        if outcome.code == "quote":
            field, detail = QUOTE_REFUSALS.get(outcome.detail, ("quote_id", "quote refused"))
            raise InvalidInput(detail, field=field)
        return self._ride(outcome, ride_id, "request"), outcome.code == "ok"

    async def cancel(
        self,
        ride_id: str,
        *,
        by: Literal["rider", "driver", "ops"],
        actor_id: str,
        event_id: str | None = None,
    ) -> Ride:
        """Rider: its own ride, before the trip starts. Ops: any live ride. Both free the
        driver. Driver: the assigned driver gives the ride back, which returns to `requested`
        (ride.unmatched, reason driver_cancelled) with a fresh wait window."""
        if by not in ("rider", "driver", "ops"):
            raise InvalidInput("by must be rider, driver or ops", field="by")
        if by == "driver":
            return await self._requeue(
                "cancel_by_driver", ride_id, actor_id, "driver_cancelled", event_id
            )
        action: RideAction = "cancel_by_rider" if by == "rider" else "cancel_by_ops"
        event_id = event_id or new_event_id()  # the same id across re-reads
        for _ in range(CANCEL_ATTEMPTS):
            current = await self.get(ride_id)
            if current is None:
                raise NotFound(f"ride {ride_id} not found", field="ride_id")
            driver_id = current.driver_id or current.offer_driver_id or ""
            outcome = await self._step(
                self.scripts.cancel_ride,
                action,
                ride_id,
                driver_id=driver_id,
                event_id=event_id,
                extra_keys=[self.keys.driver(driver_id)] if driver_id else [],
                extra_args=[by, actor_id],
            )
            if outcome.code != "retry":
                return self._ride(outcome, ride_id, action)
        raise refusal(outcome, ride_id=ride_id, verb=TRANSITIONS[action].verb)

    # --- matching ----------------------------------------------------------------------

    async def offer(
        self,
        *,
        ride_id: str,
        driver_id: str,
        pickup_eta_s: float,
        offer_timeout_s: float,
        expected_version: int | None = None,
        event_id: str | None = None,
    ) -> Ride | None:
        """Reserve an available driver for a waiting ride. None (no error, no event) when the
        ride is no longer `requested`, is past `expected_version` (the caller's view is stale),
        or the driver is not available: matching re-reads or tries its next candidate. A ride
        past its deadline (server clock) is offered to nobody: it expires in the same step
        (ride.expired) and the answer is None too."""
        inputs.checked_id("driver_id", driver_id)
        outcome = await self._step(
            self.scripts.offer_ride,
            "offer",
            ride_id,
            driver_id=driver_id,
            event_id=event_id,
            expected_version=expected_version,
            extra_keys=[self.keys.driver(driver_id)],
            extra_args=[
                inputs.number("pickup_eta_s", pickup_eta_s, inputs.SECONDS_DIGITS),
                inputs.millis("offer_timeout_s", offer_timeout_s),
                *self._chained("expire", ride_id),
            ],
        )
        return ride_result(outcome, ride_id=ride_id, verb="offer")

    async def decline(
        self,
        ride_id: str,
        driver_id: str,
        *,
        reason: Literal["declined", "timeout"] = "declined",
        event_id: str | None = None,
    ) -> Ride:
        """The offered driver said no, or did not answer in time (reason "timeout", used by
        matching): the ride waits again, the driver is free and skipped for this ride. Past
        the ride's deadline (server clock) it expires instead, in the same step: ride.unmatched
        (the driver is free), then ride.expired; the ride returned is `expired`."""
        if reason not in ("declined", "timeout"):
            raise InvalidInput("reason must be declined or timeout", field="reason")
        return await self._requeue(
            "decline", ride_id, driver_id, reason, event_id, self._chained("expire", ride_id)
        )

    async def _requeue(
        self,
        action: RideAction,
        ride_id: str,
        driver_id: str,
        reason: str,
        event_id: str | None,
        when_overdue: Sequence[str] = (),
    ) -> Ride:
        """Back to `requested`; `when_overdue` is the step the script chains when the ride is
        past its deadline (a driver cancel renews the deadline instead)."""
        renew_deadline = "1" if action == "cancel_by_driver" else "0"
        return await self._driver_step(
            self.scripts.requeue_ride,
            action,
            ride_id,
            driver_id,
            event_id=event_id,
            extra_args=[reason, renew_deadline, ",".join(ASSIGNMENT_TIMESTAMPS), *when_overdue],
        )

    async def expire(
        self, ride_id: str, *, event_id: str | None = None, expected_version: int | None = None
    ) -> Ride | None:
        """A waiting ride past its deadline (server clock) expires. None when the ride is no
        longer `requested`, is past `expected_version`, or is not due yet."""
        outcome = await self._step(
            self.scripts.expire_ride,
            "expire",
            ride_id,
            event_id=event_id,
            expected_version=expected_version,
        )
        return ride_result(outcome, ride_id=ride_id, verb="expire")

    async def set_eta(
        self, ride_id: str, pickup_eta_s: float | None = None, trip_eta_s: float | None = None
    ) -> None:
        """Refresh ETAs of a ride (unknown rides are ignored): no event, no version change."""
        pairs: list[str] = []
        for name, value in (("pickup_eta_s", pickup_eta_s), ("trip_eta_s", trip_eta_s)):
            if value is not None:
                pairs += [name, inputs.number(name, value, inputs.SECONDS_DIGITS)]
        if pairs:  # no fence and no announcement: the store's callers hold no lease
            args = ["", str(len(pairs)), *pairs]
            await self.scripts.set_eta(keys=[self.keys.ride(ride_id)], args=args)

    # --- janitor -----------------------------------------------------------------------

    async def lose_driver(
        self, ride_id: str, driver_id: str, *, silence_s: float, event_id: str | None = None
    ) -> Ride | None:
        """The ride's assigned driver has been silent for `silence_s` (server clock): before
        pickup the ride waits for another driver, during the trip it is cancelled; the driver
        goes offline. None when the ride has moved on or the driver pinged meanwhile."""
        ride = await self.get(ride_id)
        if ride is None:
            return None
        action: RideAction = "lose_driver_on_trip" if ride.status == "started" else "lose_driver"
        outcome = await self._step(
            self.scripts.lose_driver,
            action,
            ride_id,
            driver_id=driver_id,
            event_id=event_id,
            expected_version=ride.version,
            extra_keys=[self.keys.driver(driver_id), self.keys.drivers_seen],
            extra_args=[inputs.millis("silence_s", silence_s), ",".join(ASSIGNMENT_TIMESTAMPS)],
        )
        if outcome.code == "conflict":
            return None  # the driver no longer holds this ride
        return ride_result(outcome, ride_id=ride_id, verb=TRANSITIONS[action].verb)

    async def evict_drivers(self, driver_ids: Sequence[str], *, silence_s: float) -> list[str]:
        """Forget drivers silent for `silence_s` (server clock) that hold no ride or offer:
        hash, status, position and index entries; returns the ids evicted."""
        if not driver_ids:
            return []
        keys = self.keys
        args: list[str] = [inputs.millis("silence_s", silence_s), self.source]
        for driver_id in driver_ids:
            args += [driver_id, new_event_id()]
        reply: list[Any] = await self.scripts.evict_drivers(
            keys=[
                keys.drivers_seen,
                keys.positions,
                keys.driver_statuses,
                keys.drivers_geo,
                keys.rides,
                *(keys.driver(d) for d in driver_ids),
            ],
            args=args,
        )
        evicted, announced = reply
        self._published(int(announced))
        return [e.decode() for e in evicted]

    # --- market moves ------------------------------------------------------------------

    async def leave_market(self, driver_ids: Sequence[str], *, moved_at_ms: int) -> MarketLeft:
        """Drivers recorded in another market at `moved_at_ms` leave this one: out of its geo
        index, offline if available, their record here deleted (leave_market.lua). Those that
        hold a ride or an offer here stay (`kept`); those that were available are `carried`, to
        be made available in their new market. A driver recorded here since stays too, and one
        with no record here has left already."""
        if not driver_ids:
            return MarketLeft()
        keys, row = self.keys, DRIVER_TRANSITIONS["offline"]
        args = [
            str(moved_at_ms),
            self.source,
            row.event_type,
            str(row.event_version),
            ",".join(sorted(DRIVER_HOLDS_RIDE)),
        ]
        driver_keys: list[str] = []
        for driver_id in driver_ids:
            args += [driver_id, new_event_id()]
            driver_keys += [keys.driver(driver_id), keys.driver_home(driver_id)]
        reply: list[Any] = await self.scripts.leave_market(
            keys=[keys.driver_statuses, keys.drivers_geo, keys.rides, *driver_keys], args=args
        )
        kept, carried, left_at = reply
        self._published(len(carried))  # each driver carried away is announced offline
        return MarketLeft(
            kept=[k.decode() for k in kept],
            carried=[c.decode() for c in carried],
            left_at_ms=int(left_at),
        )

    # --- driver ------------------------------------------------------------------------

    async def accept(self, ride_id: str, driver_id: str, *, event_id: str | None = None) -> Ride:
        """The offered driver takes the ride (offered → matched)."""
        return await self._driver_step(
            self.scripts.accept_offer, "accept", ride_id, driver_id, event_id=event_id
        )

    async def arrived(self, ride_id: str, driver_id: str, *, event_id: str | None = None) -> Ride:
        return await self._driver_step(
            self.scripts.move_trip, "arrive", ride_id, driver_id, event_id=event_id
        )

    async def start(self, ride_id: str, driver_id: str, *, event_id: str | None = None) -> Ride:
        return await self._driver_step(
            self.scripts.move_trip, "start", ride_id, driver_id, event_id=event_id
        )

    async def complete(
        self,
        ride_id: str,
        driver_id: str,
        *,
        fare: float | None = None,
        event_id: str | None = None,
    ) -> Ride:
        """End the trip; `fare` (if given) replaces the quoted fare; the driver is free again."""
        return await self._driver_step(
            self.scripts.complete_trip,
            "complete",
            ride_id,
            driver_id,
            event_id=event_id,
            extra_args=[inputs.number("fare", fare, inputs.MONEY_DIGITS)],
        )

    async def set_driver_status(
        self,
        driver_id: str,
        status: Literal["available", "offline"],
        *,
        unless_set_since_ms: int | None = None,
    ) -> Driver:
        """A driver's own choice; Conflict while it holds a ride or an offer. A driver seen for
        the first time is created. Setting the current status again changes nothing. A driver
        silent for `driver_stale_s` goes available unindexed: its next ping indexes it. With
        `unless_set_since_ms` (server ms), a status set at or after it is left as it is: a
        status carried from the market a driver left never overrides a newer PUT."""
        inputs.checked_id("driver_id", driver_id)
        row = DRIVER_TRANSITIONS.get(status)
        if row is None:
            raise InvalidInput("status must be available or offline", field="status")
        reply: list[bytes] = await self.scripts.set_driver_status(
            keys=[
                self.keys.driver(driver_id),
                self.keys.driver_statuses,
                self.keys.rides,
                self.keys.drivers_geo,
                self.keys.positions,
                self.keys.drivers_seen,
            ],
            args=[
                new_event_id(),
                self.source,
                driver_id,
                row.to,
                ",".join(sorted(row.from_states)),
                "",
                row.event_type,
                str(row.event_version),
                inputs.millis("driver_stale_s", self.driver_stale_s),
                "" if unless_set_since_ms is None else str(unless_set_since_ms),
            ],
        )
        outcome = Outcome.from_reply(reply)
        self._published(outcome.appended)
        return driver_result(outcome, verb=row.verb)

    # --- reads -------------------------------------------------------------------------

    async def get(self, ride_id: str) -> Ride | None:
        raw = await self.redis.hgetall(self.keys.ride(ride_id))
        return Ride.from_hash(decode_hash(raw)) if raw else None

    async def get_driver(self, driver_id: str) -> Driver | None:
        raw = await self.redis.hgetall(self.keys.driver(driver_id))
        return Driver.from_hash(decode_hash(raw)) if raw else None
