"""Batch mode's pure decision: the minimum-total-pickup-ETA assignment of waiting rides to free
drivers (matching/assignment.py), without Redis."""

from __future__ import annotations

import numpy as np
import pytest

from matching.assignment import FORBIDDEN, Pair, Spot, assign_min_total_eta, eta_matrix


def greedy_total(eta: np.ndarray) -> float:
    """Today's policy on the same matrix: rides in arrival order, each takes its nearest free."""
    taken: set[int] = set()
    total = 0.0
    for row in eta:
        j = min((j for j in range(len(row)) if j not in taken), key=lambda j: row[j])
        taken.add(j)
        total += float(row[j])
    return total


def test_batch_beats_greedy_when_the_first_ride_takes_the_only_driver_the_second_can_use() -> None:
    # r1 is a little nearer to a; b is far from r2. Greedy gives r1 a and r2 b: 60 + 900 s.
    eta = np.array([[60.0, 120.0], [90.0, 900.0]])
    pairs = assign_min_total_eta(["r1", "r2"], ["a", "b"], eta)
    assert {(p.ride_id, p.driver_id) for p in pairs} == {("r1", "b"), ("r2", "a")}
    assert sum(p.pickup_eta_s for p in pairs) == 210.0 < greedy_total(eta) == 960.0


def test_each_driver_serves_at_most_one_ride_and_extra_rides_wait() -> None:
    eta = np.array([[10.0, 20.0], [15.0, 25.0], [12.0, 30.0]])
    pairs = assign_min_total_eta(["r1", "r2", "r3"], ["a", "b"], eta)
    assert len(pairs) == 2
    assert len({p.driver_id for p in pairs}) == 2 and len({p.ride_id for p in pairs}) == 2


def test_a_pair_that_is_not_a_candidate_is_never_offered() -> None:
    # r2's only candidate is taken by r1's only candidate: r2 waits rather than get a forbidden b
    eta = np.array([[10.0, FORBIDDEN], [FORBIDDEN, FORBIDDEN]])
    assert assign_min_total_eta(["r1", "r2"], ["a", "b"], eta) == [Pair("r1", "a", 10.0)]


def test_more_drivers_than_rides_picks_the_cheapest_columns() -> None:
    eta = np.array([[50.0, 5.0, 40.0]])
    assert assign_min_total_eta(["r1"], ["a", "b", "c"], eta) == [Pair("r1", "b", 5.0)]


def test_empty_batches_and_mismatched_matrices() -> None:
    assert assign_min_total_eta([], ["a"], np.zeros((0, 1))) == []
    assert assign_min_total_eta(["r1"], [], np.zeros((1, 0))) == []
    with pytest.raises(ValueError, match="rides × drivers"):
        assign_min_total_eta(["r1"], ["a", "b"], np.zeros((2, 2)))


def test_optimum_on_random_batches_is_never_worse_than_greedy() -> None:
    rng = np.random.default_rng(13)
    better = 0
    for _ in range(200):
        rides, drivers = rng.integers(1, 8), rng.integers(8, 12)
        eta = rng.uniform(30, 900, size=(rides, drivers))
        total = sum(
            p.pickup_eta_s
            for p in assign_min_total_eta(
                [f"r{i}" for i in range(rides)], [f"d{j}" for j in range(drivers)], eta
            )
        )
        greedy = greedy_total(eta)
        assert total <= greedy + 1e-9
        better += total < greedy - 1e-9
    assert better > 0  # the test would pass vacuously if the batches never contended


def test_eta_matrix_prices_candidates_only() -> None:
    pickups = [Spot("r1", 0.0, 0.0), Spot("r2", 1.0, 1.0)]
    drivers = [Spot("a", 0.5, 0.0), Spot("b", 2.0, 2.0)]

    def manhattan(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        return abs(lat1 - lat2) + abs(lon1 - lon2)

    matrix = eta_matrix(pickups, drivers, {"r1": ["a"], "r2": ["a", "b", "gone"]}, manhattan)
    assert matrix.tolist() == [[0.5, FORBIDDEN], [1.5, 2.0]]
