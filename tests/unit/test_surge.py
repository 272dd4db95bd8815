"""Surge maths: the sliding window, the smoothed multiplier and hysteresis."""

from __future__ import annotations

import random

import pytest

from pricing.deps import market_surge
from pricing.publisher import surge_for
from pricing.surge import SurgeState, SurgeWindow, compute_surge, quantise
from ridepulse.geo import cell_of, ring
from ridepulse.settings import Settings

HOT = cell_of(37.7749, -122.4194)
NEAR = sorted(ring(HOT, 1))
FAR = cell_of(37.80, -122.45)
T0 = 1_700_000_000_000
MINUTE_MS = 60_000


def window_with(requests: int, drivers: int, cell: str = HOT, ts_ms: int = T0) -> SurgeWindow:
    window = SurgeWindow()
    for i in range(requests):
        window.add_request(cell, ts_ms + i)
    window.replace_supply({f"d{i}": cell for i in range(drivers)})
    return window


def test_surge_rises_in_a_cell_when_requests_outnumber_drivers() -> None:
    demand, supply = window_with(requests=6, drivers=2).counts(T0 + MINUTE_MS)
    surge = compute_surge(demand, supply)
    # 6 requests / 2 drivers = 3:1 -> 1 + 0.5 x (3 - 1)
    assert surge[HOT] == 2.0
    assert FAR not in surge


def test_no_surge_while_drivers_keep_up_with_requests() -> None:
    demand, supply = window_with(requests=5, drivers=5).counts(T0)
    assert compute_surge(demand, supply) == {}


def test_neighbouring_cells_get_a_smoothed_smaller_rise() -> None:
    demand, supply = window_with(requests=4, drivers=1).counts(T0)
    surge = compute_surge(demand, supply, k_ring=1)
    assert surge[HOT] == 2.5  # 4 / 1
    for cell in NEAR:
        assert 1.0 < surge[cell] < surge[HOT], f"{cell}: {surge.get(cell)} vs hot {surge[HOT]}"
        assert surge[cell] == 1.5  # half the demand, the one-driver floor
    assert FAR not in surge


def test_k_ring_zero_keeps_surge_in_the_cell() -> None:
    demand, supply = window_with(requests=4, drivers=1).counts(T0)
    assert compute_surge(demand, supply, k_ring=0) == {HOT: 2.5}


def test_a_neighbour_with_its_own_idle_drivers_damps_the_rise() -> None:
    demand = {HOT: 4}
    supply = {HOT: 1, NEAR[0]: 4}
    surge = compute_surge(demand, supply)
    assert surge[HOT] < compute_surge(demand, {HOT: 1})[HOT]
    assert NEAR[0] not in surge


def test_surge_is_capped() -> None:
    demand, supply = window_with(requests=200, drivers=1).counts(T0)
    assert max(compute_surge(demand, supply).values()) == 3.0
    assert max(compute_surge(demand, supply, cap=2.2).values()) == 2.2


def test_a_cap_of_one_turns_surge_off() -> None:
    """RIDEPULSE_SURGE_CAP=1 is the documented off switch (the quality runs' surge-off city)."""
    demand, supply = window_with(requests=200, drivers=1).counts(T0)
    assert set(compute_surge(demand, supply, cap=1.0).values()) <= {1.0}


def test_every_multiplier_is_a_multiple_of_the_step() -> None:
    rng = random.Random(23)
    cells = [HOT, *NEAR, FAR]
    for _ in range(50):
        demand = {c: rng.randint(0, 12) for c in cells}
        supply = {c: rng.randint(0, 6) for c in cells}
        for cell, multiplier in compute_surge(demand, supply).items():
            assert multiplier == round(multiplier, 1), f"{cell}: {multiplier!r}"
            assert 1.0 < multiplier <= 3.0


def test_quantise_rounds_half_up_to_the_step() -> None:
    assert quantise(1.149) == 1.1
    assert quantise(1.15) == 1.2
    assert quantise(1.27, step=0.25) == 1.25


def test_surge_falls_back_to_one_and_is_reported_cleared_after_the_window_passes() -> None:
    window = window_with(requests=6, drivers=1)
    state = SurgeState()
    assert state.update(compute_surge(*window.counts(T0 + MINUTE_MS)))[HOT] == 3.0
    assert state.update(compute_surge(*window.counts(T0 + 4 * MINUTE_MS))) == {}

    later = compute_surge(*window.counts(T0 + 5 * MINUTE_MS + 10))
    assert later == {}
    cleared = state.update(later)
    assert cleared[HOT] == 1.0
    assert set(cleared.values()) == {1.0}
    assert state.published == {}


def test_window_length_is_configurable() -> None:
    window = SurgeWindow(window_ms=MINUTE_MS)
    window.add_request(HOT, T0)
    assert window.counts(T0 + MINUTE_MS - 1)[0] == {HOT: 1}
    assert window.counts(T0 + MINUTE_MS)[0] == {}


def test_each_supply_sample_replaces_the_last() -> None:
    window = window_with(requests=0, drivers=3)
    window.replace_supply({"d1": FAR, "d2": HOT})
    assert window.counts(T0)[1] == {FAR: 1, HOT: 1}
    window.replace_supply({})
    assert window.counts(T0)[1] == {}


def test_requests_older_than_a_window_behind_the_newest_are_ignored() -> None:
    window = SurgeWindow(window_ms=MINUTE_MS)
    window.add_request(HOT, T0 + 2 * MINUTE_MS)
    window.add_request(FAR, T0)
    assert window.counts(T0 + 2 * MINUTE_MS)[0] == {HOT: 1}


def test_hysteresis_holds_the_published_multiplier_through_small_oscillations() -> None:
    state = SurgeState()
    assert state.update({HOT: 1.5}) == {HOT: 1.5}
    for wobble in (1.4, 1.6, 1.5, 1.4, 1.6, 1.4):
        assert state.update({HOT: wobble}) == {}, f"republished on a wobble to {wobble}"
    assert state.published == {HOT: 1.5}


def test_hysteresis_publishes_a_change_of_at_least_point_two() -> None:
    state = SurgeState()
    state.update({HOT: 1.5})
    assert state.update({HOT: 1.7}) == {HOT: 1.7}
    assert state.update({HOT: 1.5}) == {HOT: 1.5}


def test_a_cell_does_not_start_surging_on_a_small_rise() -> None:
    state = SurgeState()
    assert state.update({HOT: 1.1}) == {}
    assert state.update({HOT: 1.2}) == {HOT: 1.2}


def test_a_cell_back_at_one_is_cleared_even_from_a_small_multiplier() -> None:
    state = SurgeState()
    state.update({HOT: 1.3})
    assert state.update({HOT: 1.1}) == {HOT: 1.1}
    assert state.update({}) == {HOT: 1.0}
    assert state.update({}) == {}


@pytest.mark.parametrize("window_ms", [0, -1])
def test_window_must_be_positive(window_ms: int) -> None:
    with pytest.raises(ValueError, match="window_ms must be positive"):
        SurgeWindow(window_ms=window_ms)


def test_the_smoothing_and_hysteresis_settings_reach_pricing() -> None:
    hot = cell_of(37.7793, -122.4193, 8)
    demand = {hot: 6}  # six requests, no drivers: the hot cell and, smoothed, its ring
    smoothed = surge_for(Settings(surge_neighbour_weight=0.5), demand, {})
    alone = surge_for(Settings(surge_neighbour_weight=0.0), demand, {})
    assert set(alone) == {hot} and len(smoothed) == 7
    assert surge_for(Settings(surge_cap=2.0), demand, {})[hot] == 2.0
    damped, default = (market_surge(s).state for s in (Settings(surge_min_change=0.5), Settings()))
    assert damped.update({hot: 1.6}) == default.update({hot: 1.6}) == {hot: 1.6}
    assert damped.update({hot: 1.9}) == {}  # a 0.3 step is under the 0.5 hysteresis
    assert default.update({hot: 1.9}) == {hot: 1.9}
