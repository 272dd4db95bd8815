"""Ride ids name their market, so ingest and matching find a ride's keys from its id alone."""

from __future__ import annotations

from ridepulse.rides.ids import market_of_ride, new_ride_id


def test_a_minted_ride_id_names_its_market() -> None:
    ride_id = new_ride_id("sf")
    assert ride_id.startswith("sf-")
    assert market_of_ride(ride_id) == "sf"


def test_ride_ids_are_unique_and_time_ordered() -> None:
    first, second = new_ride_id("sf"), new_ride_id("sf")
    assert first < second


def test_a_string_without_a_market_is_not_a_ride_id() -> None:
    assert market_of_ride("nodash") is None
    assert market_of_ride("-abc") is None
    assert market_of_ride("sf-") is None
