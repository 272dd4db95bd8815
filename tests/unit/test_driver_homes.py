"""When ingest (re)writes a driver's market record: on a new driver, a changed market, or half
the record's TTL later; never once per ping."""

from __future__ import annotations

import pytest

from ingest import driver_homes
from ingest.driver_homes import DriverHomes


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def homes_at(clock: Clock) -> DriverHomes:
    return DriverHomes("t", ["sf", "nyc"], ttl_s=600, clock=clock)


def test_a_new_driver_is_due_and_once_recorded_is_not_due_again() -> None:
    homes = homes_at(Clock())
    due = homes.unrecorded("nyc", ["a", "b", "a"])
    assert due == {"a": "nyc", "b": "nyc"}
    homes.recorded(due)
    assert homes.unrecorded("nyc", ["a", "b"]) == {}


def test_an_unwritten_record_stays_due() -> None:
    homes = homes_at(Clock())
    homes.unrecorded("nyc", ["a"])  # the append failed: recorded() was never called
    assert homes.unrecorded("nyc", ["a"]) == {"a": "nyc"}


def test_a_changed_market_is_due_at_once() -> None:
    homes = homes_at(Clock())
    homes.recorded({"a": "nyc"})
    assert homes.unrecorded("sf", ["a"]) == {"a": "sf"}


def test_a_record_is_rewritten_after_half_its_ttl_so_it_never_lapses_while_pinging() -> None:
    clock = Clock()
    homes = homes_at(clock)
    homes.recorded({"a": "nyc"})
    clock.now += 299
    assert homes.unrecorded("nyc", ["a"]) == {}
    clock.now += 1
    assert homes.unrecorded("nyc", ["a"]) == {"a": "nyc"}


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_homes, "MAX_REMEMBERED", 3)
    homes = homes_at(Clock())
    homes.recorded({"a": "sf", "b": "sf", "c": "sf"})
    homes.recorded({"d": "sf"})  # past the cap: forgotten drivers are written once more
    assert homes.unrecorded("sf", ["a", "d"]) == {"a": "sf"}
