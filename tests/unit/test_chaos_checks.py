"""The chaos suite's verdicts catch what they claim to catch."""

from __future__ import annotations

from loadtests.chaos.checks import RideEvent, Verdict, double_assignments, judge, longest_gap


def ev(n: int, kind: str, ride: str, driver: str | None = None, **more: str) -> RideEvent:
    return RideEvent(f"{n}-0", kind, ride, driver, more.get("rider"), more.get("reason"))


def _happy(ride: str, driver: str, rider: str, start: int) -> list[RideEvent]:
    return [
        ev(start, "ride.requested", ride, rider=rider),
        ev(start + 1, "ride.offered", ride, driver),
        ev(start + 2, "ride.matched", ride, driver),
        ev(start + 3, "ride.completed", ride, driver),
    ]


def _verdicts(events: list[RideEvent], **overrides: object) -> dict[str, Verdict]:
    args: dict[str, object] = {
        "acknowledged": {"k1": {"r1"}, "k2": {"r2"}},
        "unanswered": [],
        "readable": {"r1": 200, "r2": 200},
        "final_status": {"r1": "completed", "r2": "completed"},
        "events": events,
        "min_completed": 0.95,
    }
    args.update(overrides)
    return {v.name: v for v in judge(**args)}  # type: ignore[arg-type]


def test_a_clean_run_passes_every_check() -> None:
    events = _happy("r1", "d1", "k1", 1) + _happy("r2", "d1", "k2", 10)
    verdicts = _verdicts(events)
    assert all(v.ok for v in verdicts.values()), verdicts


def test_a_driver_matched_while_holding_a_ride_is_a_double_assignment() -> None:
    events = [
        ev(1, "ride.matched", "r1", "d1"),
        ev(2, "ride.matched", "r2", "d1"),
        ev(3, "ride.completed", "r1", "d1"),
    ]
    assert double_assignments(events) == ["driver d1 matched to r2 at 2-0 while holding r1"]


def test_a_driver_freed_by_its_own_cancel_may_take_the_next_ride() -> None:
    events = [
        ev(1, "ride.matched", "r1", "d1"),
        ev(2, "ride.unmatched", "r1", "d1", reason="driver_cancelled"),
        ev(3, "ride.matched", "r2", "d1"),
    ]
    assert double_assignments(events) == []


def test_a_second_terminal_event_and_a_missing_one_both_fail() -> None:
    events = [*_happy("r1", "d1", "k1", 1), ev(5, "ride.expired", "r1")]
    events += [ev(10, "ride.requested", "r2", rider="k2")]
    verdict = _verdicts(events)["exactly one terminal event per ride"]
    assert not verdict.ok
    assert verdict.examples == ["ride r1: 2 terminal events", "ride r2: 0 terminal events"]


def test_a_key_that_created_two_rides_fails_even_if_the_client_saw_one() -> None:
    events = _happy("r1", "d1", "k1", 1) + _happy("r2", "d2", "k2", 10)
    events.append(ev(20, "ride.requested", "r3", rider="k1"))
    verdict = _verdicts(events)["one ride per Idempotency-Key"]
    assert not verdict.ok and "key k1" in verdict.examples[0]


def test_a_lost_ride_and_an_unanswered_request_fail() -> None:
    events = _happy("r1", "d1", "k1", 1) + _happy("r2", "d2", "k2", 10)
    verdicts = _verdicts(events, readable={"r1": 200, "r2": 404}, unanswered=["k3"])
    assert not verdicts["every acknowledged ride readable (0 lost)"].ok
    assert not verdicts["every ride request answered"].ok


def test_completion_below_the_floor_fails() -> None:
    events = _happy("r1", "d1", "k1", 1) + _happy("r2", "d2", "k2", 10)
    verdicts = _verdicts(events, final_status={"r1": "completed", "r2": "expired"})
    assert not verdicts["at least 95% completed"].ok


def test_longest_gap_counts_the_edges_of_the_window() -> None:
    assert longest_gap([2.0, 3.0, 9.0], 0.0, 10.0) == (6.0, 3.0)
    assert longest_gap([], 0.0, 4.0) == (4.0, 0.0)
