"""Rider demand: concentrated around hotspots (so surge happens), trips worth driving."""

from __future__ import annotations

import math
import random

from loadtests.behaviours.demand import MIN_TRIP_M, DemandModel, RiderHabits, default_hotspots
from loadtests.behaviours.streets import Frame
from ridepulse.markets import load_markets

SF = load_markets().default
FRAME = Frame(SF.bbox)


def draw(n: int, seed: int = 1) -> list[tuple[float, float]]:
    model, rng = DemandModel(SF), random.Random(seed)
    pickups = []
    for _ in range(n):
        pickup, _ = model.next_trip(rng)
        pickups.append(FRAME.to_xy(pickup.lat, pickup.lon))
    return pickups


def test_trips_are_inside_the_market_and_long_enough_to_drive() -> None:
    model, rng = DemandModel(SF), random.Random(2)
    for _ in range(1000):
        pickup, dropoff = model.next_trip(rng)
        assert SF.bbox.contains(pickup.lat, pickup.lon) and SF.bbox.contains(
            dropoff.lat, dropoff.lon
        )
        distance = math.dist(
            FRAME.to_xy(pickup.lat, pickup.lon), FRAME.to_xy(dropoff.lat, dropoff.lon)
        )
        assert distance >= MIN_TRIP_M


def test_demand_concentrates_around_hotspots() -> None:
    """Hotspots cover a few percent of the area but draw most of the pickups."""
    pickups = draw(4000)
    spots = default_hotspots(SF)
    near = sum(any(math.dist(p, s.center) < 2 * s.sigma_m for s in spots) for p in pickups)
    area_share = sum(math.pi * (2 * s.sigma_m) ** 2 for s in spots) / (
        FRAME.width_m * FRAME.height_m
    )
    assert area_share < 0.1
    assert near / len(pickups) > 0.6, (near / len(pickups), area_share)


def test_downtown_is_the_busiest_hotspot() -> None:
    pickups = draw(4000)
    counts = {
        s.name: sum(math.dist(p, s.center) < 2 * s.sigma_m for p in pickups)
        for s in default_hotspots(SF)
    }
    assert max(counts, key=lambda name: counts[name]) == "downtown", counts


def test_the_same_seed_draws_the_same_trips() -> None:
    assert draw(100, seed=5) == draw(100, seed=5)
    assert draw(100, seed=5) != draw(100, seed=6)


def test_quote_and_cancel_habits_follow_their_probabilities() -> None:
    model = DemandModel(SF, habits=RiderHabits(quote_probability=0.3, cancel_probability=0.2))
    rng = random.Random(8)
    quotes = sum(model.wants_quote(rng) for _ in range(5000)) / 5000
    patience = [model.cancel_after_s(rng) for _ in range(5000)]
    cancels = sum(p is not None for p in patience) / 5000
    assert 0.27 < quotes < 0.33 and 0.17 < cancels < 0.23
    assert all(p >= 0 for p in patience if p is not None)
