"""ridepulse/unheard.py: a driver's silence counts only while its pings could be heard."""

from __future__ import annotations

from ridepulse.unheard import UnheardTimes

LOST_S = 120.0
THRESHOLD_S = 1.0


def test_with_no_stall_the_cutoff_is_the_plain_silence() -> None:
    times = UnheardTimes()
    times.observe(1_000_000, 0.3, THRESHOLD_S)
    assert times.cutoff_ms(1_000_000, LOST_S) == 1_000_000 - 120_000


def test_an_ongoing_stall_is_not_silence_but_the_time_before_it_is() -> None:
    times = UnheardTimes()
    times.observe(1_000_000, 130.0, THRESHOLD_S)  # the group stopped 130 s ago
    # a driver heard until the stall began is not lost; one silent 120 s before it is
    assert times.cutoff_ms(1_000_000, LOST_S) == 1_000_000 - 130_000 - 120_000


def test_after_the_stall_a_driver_gets_the_whole_lost_time_to_be_heard() -> None:
    times = UnheardTimes()
    times.observe(0, 0.0, THRESHOLD_S)
    for at in range(5_000, 135_001, 5_000):
        times.observe(at, at / 1000, THRESHOLD_S)  # stopped at 0 for 130 s
    times.observe(140_000, 0.2, THRESHOLD_S)  # caught up by the next sweep
    assert times.cutoff_ms(140_000, LOST_S) < 0, "pinging until the stall: not yet lost"
    # it is lost 120 s after the sweep that found the group caught up, not before
    assert times.cutoff_ms(259_000, LOST_S) < 0
    assert times.cutoff_ms(260_000, LOST_S) == 140_000


def test_a_blip_between_healthy_sweeps_costs_no_more_than_the_sweep_interval() -> None:
    """The lag of a group that lost its backlog is an upper bound (since its last read): the
    sweep before, which found it near the head, bounds the stretch instead."""
    times = UnheardTimes()
    times.observe(600_000, 0.1, THRESHOLD_S)
    times.observe(605_000, 300.0, THRESHOLD_S)
    times.observe(610_000, 0.1, THRESHOLD_S)
    assert times.stretches == [(599_000, 610_000)]
    assert times.cutoff_ms(700_000, LOST_S) == 700_000 - 120_000 - 11_000


def test_stretches_too_old_for_any_cutoff_are_forgotten() -> None:
    times = UnheardTimes()
    times.observe(10_000, 5.0, THRESHOLD_S)
    times.observe(15_000, 0.0, THRESHOLD_S)
    times.forget_before(20_000)
    assert times.stretches == []


def test_a_stretch_the_platform_was_deaf_merges_with_the_lag_stretches_it_meets() -> None:
    times = UnheardTimes()
    times.observe(100_000, 30.0, THRESHOLD_S)  # behind since 70 s
    times.add(90_000, 130_000)  # the janitor's own gap, overlapping the lag stretch
    times.add(200_000, 210_000)
    times.add(150_000, 160_000)
    assert times.stretches == [(70_000, 130_000), (150_000, 160_000), (200_000, 210_000)]
    times.add(160_000, 200_000)  # meets both neighbours: one stretch
    assert times.stretches == [(70_000, 130_000), (150_000, 210_000)]
    times.add(155_000, 156_000)  # already unheard: nothing changes
    assert times.stretches == [(70_000, 130_000), (150_000, 210_000)]
    # 120 s of heard time before 300 s: 90 s after the last stretch, 20 s between, 10 s before
    assert times.cutoff_ms(300_000, LOST_S) == 60_000
