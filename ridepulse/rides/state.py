"""The ride and driver state machine as data: the one transition table every writer obeys.

The Lua scripts know no status names: each step receives its row of this table as ARGV
(allowed from-states, to-state, driver statuses, event type), so the rules live only here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from ridepulse.errors import Conflict

RideStatus = Literal[
    "requested",
    "offered",
    "matched",
    "driver_arrived",
    "started",
    "completed",
    "cancelled",
    "expired",
]
DriverStatus = Literal["offline", "available", "offered", "en_route", "on_trip"]
RideAction = Literal[
    "request",
    "offer",
    "accept",
    "decline",
    "arrive",
    "start",
    "complete",
    "cancel_by_rider",
    "cancel_by_driver",
    "cancel_by_ops",
    "expire",
    "lose_driver",
    "lose_driver_on_trip",
]

# Lifecycle order: the order of a ride's timeline.
RIDE_STATUSES: Final[tuple[RideStatus, ...]] = get_args(RideStatus)
DRIVER_STATUSES: Final[tuple[DriverStatus, ...]] = get_args(DriverStatus)
TERMINAL: Final[frozenset[RideStatus]] = frozenset({"completed", "cancelled", "expired"})
# A driver in one of these statuses holds exactly one ride (its `ride_id`).
DRIVER_HOLDS_RIDE: Final[frozenset[DriverStatus]] = frozenset({"offered", "en_route", "on_trip"})
# The status a ride's driver must have while the ride is in a given status (no entry: no driver).
DRIVER_STATUS_OF_RIDE: Final[dict[RideStatus, DriverStatus]] = {
    "offered": "offered",
    "matched": "en_route",
    "driver_arrived": "en_route",
    "started": "on_trip",
}
# Timestamps that describe an abandoned assignment: cleared when a ride goes back to `requested`,
# so the timeline shows the path the ride is on now (the stream keeps the full history).
ASSIGNMENT_TIMESTAMPS: Final[tuple[str, ...]] = ("offered_at", "matched_at", "driver_arrived_at")


@dataclass(frozen=True, slots=True)
class Transition:
    """One row: from which ride statuses an action moves a ride where, and what its driver does.

    `driver_from` empty means the step involves no driver; `driver_to` None leaves the driver
    as it is. `count_as` is the `ride_counts` field the step increments."""

    action: RideAction
    from_states: frozenset[RideStatus]
    to: RideStatus
    event_type: str
    verb: str
    driver_from: frozenset[DriverStatus] = frozenset()
    driver_to: DriverStatus | None = None
    count_as: str = ""
    event_version: int = 1

    @property
    def counter(self) -> str:
        return self.count_as or self.to

    @property
    def terminal(self) -> bool:
        return self.to in TERMINAL

    @property
    def driver_holds_ride(self) -> bool:
        return self.driver_to in DRIVER_HOLDS_RIDE

    @property
    def opens(self) -> bool:
        """The ride lands in `open_rides`: waiting for an offer until its deadline."""
        return self.to == "requested"

    @property
    def awaits_answer(self) -> bool:
        """The ride lands in `offer_timeouts`: waiting for the driver until the offer expires."""
        return self.to == "offered"


def _row(
    action: RideAction,
    from_states: tuple[RideStatus, ...],
    to: RideStatus,
    event_type: str,
    verb: str,
    driver: tuple[tuple[DriverStatus, ...], DriverStatus | None] = ((), None),
    count_as: str = "",
) -> Transition:
    return Transition(
        action,
        frozenset(from_states),
        to,
        event_type,
        verb,
        frozenset(driver[0]),
        driver[1],
        count_as,
    )


_BEFORE_START: tuple[RideStatus, ...] = ("requested", "offered", "matched", "driver_arrived")
_ASSIGNED: tuple[RideStatus, ...] = ("matched", "driver_arrived")

TRANSITIONS: Final[dict[RideAction, Transition]] = {
    t.action: t
    for t in (
        _row("request", (), "requested", "ride.requested", "request"),
        _row(
            "offer", ("requested",), "offered", "ride.offered", "offer", (("available",), "offered")
        ),
        _row(
            "accept", ("offered",), "matched", "ride.matched", "accept", (("offered",), "en_route")
        ),
        # Declined or timed out: back to `requested` for a re-offer; counted as `unmatched`
        # so `requested` keeps counting ride requests.
        _row(
            "decline",
            ("offered",),
            "requested",
            "ride.unmatched",
            "decline",
            (("offered",), "available"),
            count_as="unmatched",
        ),
        _row(
            "arrive",
            ("matched",),
            "driver_arrived",
            "ride.driver_arrived",
            "mark arrived",
            (("en_route",), None),
        ),
        _row(
            "start",
            ("driver_arrived",),
            "started",
            "ride.started",
            "start",
            (("en_route",), "on_trip"),
        ),
        _row(
            "complete",
            ("started",),
            "completed",
            "ride.completed",
            "complete",
            (("on_trip",), "available"),
        ),
        _row(
            "cancel_by_rider",
            _BEFORE_START,
            "cancelled",
            "ride.cancelled",
            "cancel",
            (("offered", "en_route"), "available"),
        ),
        _row(
            "cancel_by_driver",
            _ASSIGNED,
            "requested",
            "ride.unmatched",
            "cancel as driver",
            (("en_route",), "available"),
            count_as="unmatched",
        ),
        _row(
            "cancel_by_ops",
            (*_BEFORE_START, "started"),
            "cancelled",
            "ride.cancelled",
            "cancel",
            (("offered", "en_route", "on_trip"), "available"),
        ),
        _row("expire", ("requested",), "expired", "ride.expired", "expire"),
        # The assigned driver has been silent past `driver_lost_s` (server clock): before pickup
        # the ride waits for another driver (fresh wait window); during the trip it is
        # cancelled. Either way the silent driver goes offline, not back to available.
        _row(
            "lose_driver",
            _ASSIGNED,
            "requested",
            "ride.unmatched",
            "requeue from a lost driver",
            (("en_route",), "offline"),
            count_as="unmatched",
        ),
        _row(
            "lose_driver_on_trip",
            ("started",),
            "cancelled",
            "ride.cancelled",
            "cancel for a lost driver",
            (("on_trip",), "offline"),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class DriverTransition:
    """A driver's own status change; setting the status it already has is a no-op."""

    to: Literal["available", "offline"]
    from_states: frozenset[DriverStatus]
    verb: str
    event_type: str = "driver.status"
    event_version: int = 1


DRIVER_TRANSITIONS: Final[dict[str, DriverTransition]] = {
    # A driver holding a ride or an offer can neither go offline nor be made available:
    # the ride's own steps release it.
    "available": DriverTransition("available", frozenset({"offline"}), "become available"),
    "offline": DriverTransition("offline", frozenset({"available"}), "go offline"),
}


def conflict_message(status: str, verb: str, subject: str = "ride") -> str:
    """The one wording of a refused transition, e.g. "ride is completed; cannot start"."""
    return f"{subject} is {status}; cannot {verb}"


def next_status(action: RideAction, current: RideStatus | None) -> RideStatus:
    """Where `action` takes a ride in `current` (None: not created yet); Conflict if refused."""
    row = TRANSITIONS[action]
    if current is None and action == "request":
        return row.to
    if current is None or current not in row.from_states:
        raise Conflict(conflict_message(current or "unknown", row.verb))
    return row.to


def allowed_actions(current: RideStatus) -> frozenset[RideAction]:
    """Every action a ride in `current` accepts (none once terminal)."""
    return frozenset(a for a, row in TRANSITIONS.items() if current in row.from_states)


def next_driver_status(
    to: Literal["available", "offline"], current: DriverStatus | None
) -> DriverStatus:
    """A driver's own status change; a new driver (None) may take either status."""
    row = DRIVER_TRANSITIONS[to]
    if current is None or current == to or current in row.from_states:
        return row.to
    raise Conflict(conflict_message(current, row.verb, "driver"))
