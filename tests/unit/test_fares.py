"""The shared fare function and the stored quote."""

from __future__ import annotations

import dataclasses

import pytest

from ridepulse.contracts.events import Point
from ridepulse.fares import DEFAULT_FARES, FareTable, Quote, fare, trip_fare
from ridepulse.geo import haversine_m
from ridepulse.travel import DETOUR_FACTOR

TABLE = FareTable(
    base_usd=2.0, per_km_usd=1.0, per_min_usd=0.5, minimum_usd=6.0, booking_fee_usd=3.0
)


def test_fare_adds_base_distance_time_and_booking_fee() -> None:
    # 2.00 + 10 km x 1.00 + 20 min x 0.50 + 3.00 fee
    assert fare(10_000, 1_200, 1.0, TABLE) == 25.0


def test_surge_multiplies_the_metered_part_but_not_the_booking_fee() -> None:
    assert fare(10_000, 1_200, 1.5, TABLE) == 22.0 * 1.5 + 3.0


def test_short_trip_pays_the_minimum_plus_fee() -> None:
    assert fare(100, 30, 1.0, TABLE) == 6.0 + 3.0
    assert fare(100, 30, 2.0, TABLE) == 12.0 + 3.0


def test_fare_is_rounded_half_up_to_the_cent() -> None:
    table = FareTable(
        base_usd=10.005, per_km_usd=0, per_min_usd=0, minimum_usd=0, booking_fee_usd=0
    )
    assert fare(0, 0, 1.0, table) == 10.01
    assert fare(1_234, 567, 1.3) == round(fare(1_234, 567, 1.3), 2)


def test_default_table_prices_a_typical_city_ride_realistically() -> None:
    # 5 km, 15 minutes, no surge: a US economy ride costs roughly $12-20.
    assert 12.0 <= fare(5_000, 900, 1.0) <= 20.0
    assert fare(0, 0, 1.0) == DEFAULT_FARES.minimum_usd + DEFAULT_FARES.booking_fee_usd


def test_fare_grows_with_distance_time_and_surge() -> None:
    assert fare(8_000, 900, 1.0) > fare(5_000, 900, 1.0)
    assert fare(5_000, 1_500, 1.0) > fare(5_000, 900, 1.0)
    assert fare(5_000, 900, 1.2) > fare(5_000, 900, 1.0)


@pytest.mark.parametrize(
    ("distance_m", "duration_s", "surge"),
    [(-1, 0, 1.0), (0, -1, 1.0), (0, 0, 0.9), (float("nan"), 0, 1.0)],
)
def test_fare_rejects_impossible_inputs(distance_m: float, duration_s: float, surge: float) -> None:
    with pytest.raises(ValueError, match=r"must be (a )?finite"):
        fare(distance_m, duration_s, surge)


QUOTE = Quote(
    quote_id="q-1",
    fare=23.45,
    surge=1.3,
    pickup_eta_s=240.5,
    trip_eta_s=900.0,
    distance_m=5_123.4,
    expires_at=1_700_000_120_000,
)


def test_quote_round_trips_through_a_redis_hash_as_strings() -> None:
    stored = QUOTE.to_dict()
    assert all(isinstance(v, str) for v in stored.values())
    assert Quote.from_dict(stored) == QUOTE


def test_quote_parses_the_bytes_an_undecoded_redis_client_returns() -> None:
    raw = {k.encode(): v.encode() for k, v in QUOTE.to_dict().items()}
    assert Quote.from_dict(raw) == QUOTE


def test_quote_without_a_pickup_eta_round_trips() -> None:
    no_driver = dataclasses.replace(QUOTE, pickup_eta_s=None)
    stored = no_driver.to_dict()
    assert "pickup_eta_s" not in stored
    assert Quote.from_dict(stored) == no_driver


def test_fare_table_method_and_module_function_agree() -> None:
    assert TABLE.fare(7_300, 840, 1.4) == fare(7_300, 840, 1.4, TABLE)
    assert DEFAULT_FARES.fare(7_300, 840, 1.4) == fare(7_300, 840, 1.4)


def test_quote_with_a_missing_field_is_an_explicit_error() -> None:
    stored = QUOTE.to_dict()
    del stored["surge"]
    with pytest.raises(ValueError, match="missing surge"):
        Quote.from_dict(stored)


def test_a_trip_without_a_quote_pays_the_straight_line_times_the_detour_factor() -> None:
    pickup, dropoff = Point(lat=37.7793, lon=-122.4193), Point(lat=37.7599, lon=-122.4148)
    road_m = haversine_m(pickup.lat, pickup.lon, dropoff.lat, dropoff.lon) * DETOUR_FACTOR
    assert trip_fare(pickup, dropoff, 600, 1.2, TABLE) == fare(road_m, 600, 1.2, TABLE)
    assert trip_fare(pickup, dropoff, 600, 1.0) > trip_fare(pickup, pickup, 600, 1.0)
