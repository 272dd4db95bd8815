"""The transition table on its own: every allowed and refused move, its coherence with driver
statuses, and a Hypothesis fleet model showing no action sequence reaches an illegal state."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ridepulse.contracts.registry import REGISTRY
from ridepulse.errors import Conflict
from ridepulse.rides.state import (
    DRIVER_HOLDS_RIDE,
    DRIVER_STATUS_OF_RIDE,
    DRIVER_STATUSES,
    DRIVER_TRANSITIONS,
    RIDE_STATUSES,
    TERMINAL,
    TRANSITIONS,
    DriverStatus,
    RideAction,
    RideStatus,
    allowed_actions,
    next_driver_status,
    next_status,
)

ALLOWED = [(a, s, row.to) for a, row in TRANSITIONS.items() for s in sorted(row.from_states)]
REFUSED = [
    (a, s) for a, row in TRANSITIONS.items() for s in RIDE_STATUSES if s not in row.from_states
]

EXPECTED_TABLE: dict[RideAction, tuple[set[str], str]] = {
    "offer": ({"requested"}, "offered"),
    "accept": ({"offered"}, "matched"),
    "decline": ({"offered"}, "requested"),
    "arrive": ({"matched"}, "driver_arrived"),
    "start": ({"driver_arrived"}, "started"),
    "complete": ({"started"}, "completed"),
    "cancel_by_rider": ({"requested", "offered", "matched", "driver_arrived"}, "cancelled"),
    "cancel_by_driver": ({"matched", "driver_arrived"}, "requested"),
    "cancel_by_ops": (
        {"requested", "offered", "matched", "driver_arrived", "started"},
        "cancelled",
    ),
    "expire": ({"requested"}, "expired"),
    "lose_driver": ({"matched", "driver_arrived"}, "requested"),
    "lose_driver_on_trip": ({"started"}, "cancelled"),
}


def test_table_is_the_documented_lifecycle() -> None:
    actual = {a: (set(row.from_states), row.to) for a, row in TRANSITIONS.items() if a != "request"}
    assert actual == EXPECTED_TABLE


@pytest.mark.parametrize(("action", "current", "to"), ALLOWED)
def test_allowed_transition_moves_ride(action: RideAction, current: RideStatus, to: str) -> None:
    assert next_status(action, current) == to


@pytest.mark.parametrize(("action", "current"), REFUSED)
def test_refused_transition_names_current_state(action: RideAction, current: RideStatus) -> None:
    with pytest.raises(Conflict) as refused:
        next_status(action, current)
    assert refused.value.detail == f"ride is {current}; cannot {TRANSITIONS[action].verb}"


def test_completed_ride_cannot_start_with_the_documented_message() -> None:
    with pytest.raises(Conflict, match=r"^ride is completed; cannot start$"):
        next_status("start", "completed")


def test_only_request_creates_a_ride() -> None:
    assert next_status("request", None) == "requested"
    for action in TRANSITIONS:
        if action != "request":
            with pytest.raises(Conflict):
                next_status(action, None)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_accept_no_action(terminal: RideStatus) -> None:
    assert allowed_actions(terminal) == frozenset()


def test_every_live_state_can_be_left_and_cancelled_by_ops() -> None:
    for status in RIDE_STATUSES:
        if status not in TERMINAL:
            assert "cancel_by_ops" in allowed_actions(status), status


def test_every_event_type_is_a_registered_contract() -> None:
    for row in TRANSITIONS.values():
        assert (row.event_type, row.event_version) in REGISTRY, row.action
    for driver_row in DRIVER_TRANSITIONS.values():
        assert (driver_row.event_type, driver_row.event_version) in REGISTRY


@pytest.mark.parametrize("action", [a for a in TRANSITIONS if a not in ("request", "expire")])
def test_driver_statuses_in_the_table_match_the_ride_statuses(action: RideAction) -> None:
    """A ride's driver must be in the status its ride implies, before and after every step."""
    row = TRANSITIONS[action]
    implied_before = {
        DRIVER_STATUS_OF_RIDE[s] for s in row.from_states if s in DRIVER_STATUS_OF_RIDE
    }
    if action == "offer":
        assert row.driver_from == {"available"}
    else:
        assert row.driver_from == implied_before
    after = row.driver_to or next(iter(row.driver_from))
    # a released driver is free again, except a lost one (silent): it goes offline
    released = "offline" if action.startswith("lose_driver") else "available"
    assert after == DRIVER_STATUS_OF_RIDE.get(row.to, released)


def test_counts_keep_requested_for_new_requests_only() -> None:
    requeues = {a for a, row in TRANSITIONS.items() if row.to == "requested" and a != "request"}
    assert requeues == {"decline", "cancel_by_driver", "lose_driver"}
    assert {TRANSITIONS[a].counter for a in requeues} == {"unmatched"}
    assert TRANSITIONS["request"].counter == "requested"


@pytest.mark.parametrize("holding", sorted(DRIVER_HOLDS_RIDE))
@pytest.mark.parametrize("to", ["available", "offline"])
def test_driver_holding_a_ride_cannot_change_its_own_status(holding: DriverStatus, to: str) -> None:
    with pytest.raises(Conflict, match=f"^driver is {holding}; cannot"):
        next_driver_status(to, holding)  # type: ignore[arg-type]


def test_free_driver_moves_between_available_and_offline() -> None:
    assert next_driver_status("available", None) == "available"
    assert next_driver_status("available", "offline") == "available"
    assert next_driver_status("offline", "available") == "offline"
    assert next_driver_status("offline", "offline") == "offline"


# --- property: a fleet driven only by the table never reaches an illegal state -----------

RIDES = ("r1", "r2", "r3")
DRIVERS = ("d1", "d2")
ACTIONS = tuple(a for a in TRANSITIONS if a != "request")


@dataclass
class Fleet:
    """Rides and drivers moved exactly as the step scripts move them, using only the table."""

    rides: dict[str, RideStatus] = field(default_factory=dict)
    ride_driver: dict[str, str | None] = field(default_factory=dict)
    drivers: dict[str, DriverStatus] = field(
        default_factory=lambda: dict.fromkeys(DRIVERS, "offline")
    )
    driver_ride: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(DRIVERS))

    def act(self, action: RideAction, ride: str, driver: str) -> bool:
        """Apply one step; False when the table (or the driver check) refuses it."""
        row = TRANSITIONS[action]
        try:
            to = next_status(action, self.rides.get(ride))
        except Conflict:
            return False
        holder = self.ride_driver.get(ride)
        acting: str | None
        if action == "offer":
            if self.drivers[driver] not in row.driver_from or self.driver_ride[driver]:
                return False
            acting = driver
        elif action in ("cancel_by_rider", "cancel_by_ops"):
            acting = holder
        elif row.driver_from:
            if driver != holder:
                return False
            acting = driver
        else:
            acting = None
        if acting is not None:
            # The scripts refuse this as "driver does not hold it"; the table must never get here.
            assert self.drivers[acting] in row.driver_from, (action, self.drivers[acting])
            if row.driver_to is not None:
                self.drivers[acting] = row.driver_to
                self.driver_ride[acting] = ride if row.driver_holds_ride else None
        self.rides[ride] = to
        self.ride_driver[ride] = acting if to in DRIVER_STATUS_OF_RIDE else None
        return True


class RideFleetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fleet = Fleet()
        self.final: dict[str, RideStatus] = {}

    @rule(ride=st.sampled_from(RIDES))
    def request(self, ride: str) -> None:
        if ride not in self.fleet.rides:
            self.fleet.rides[ride] = next_status("request", None)

    @precondition(lambda self: bool(self.fleet.rides))
    @rule(
        action=st.sampled_from(ACTIONS),
        ride=st.sampled_from(RIDES),
        driver=st.sampled_from(DRIVERS),
    )
    def step(self, action: RideAction, ride: str, driver: str) -> None:
        before = self.fleet.rides.get(ride)
        moved = self.fleet.act(action, ride, driver)
        if before in TERMINAL:
            assert not moved, f"terminal ride {ride} moved by {action}"

    @rule(driver=st.sampled_from(DRIVERS), to=st.sampled_from(["available", "offline"]))
    def driver_sets_status(self, driver: str, to: str) -> None:
        try:
            self.fleet.drivers[driver] = next_driver_status(to, self.fleet.drivers[driver])  # type: ignore[arg-type]
        except Conflict:
            assert self.fleet.drivers[driver] in DRIVER_HOLDS_RIDE

    @invariant()
    def rides_and_drivers_point_at_each_other(self) -> None:
        for ride, status in self.fleet.rides.items():
            driver = self.fleet.ride_driver.get(ride)
            if status in DRIVER_STATUS_OF_RIDE:
                assert driver is not None, (ride, status)
                assert self.fleet.drivers[driver] == DRIVER_STATUS_OF_RIDE[status]
                assert self.fleet.driver_ride[driver] == ride
            else:
                assert driver is None, (ride, status)

    @invariant()
    def a_driver_holds_at_most_one_ride(self) -> None:
        for driver, ride in self.fleet.driver_ride.items():
            status = self.fleet.drivers[driver]
            assert status in DRIVER_STATUSES
            if ride is None:
                assert status not in DRIVER_HOLDS_RIDE, (driver, status)
            else:
                assert status in DRIVER_HOLDS_RIDE and self.fleet.ride_driver[ride] == driver
        held = [r for r in self.fleet.driver_ride.values() if r is not None]
        assert len(held) == len(set(held))

    @invariant()
    def terminal_states_are_final(self) -> None:
        for ride, status in self.fleet.rides.items():
            if ride in self.final:
                assert status == self.final[ride], f"{ride} left terminal {self.final[ride]}"
            elif status in TERMINAL:
                self.final[ride] = status


RideFleetMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    derandomize=True,  # seeded: the same sequences on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_no_action_sequence_reaches_an_illegal_state = RideFleetMachine.TestCase
