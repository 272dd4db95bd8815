"""Ingest's share of telemetry let in while dispatch is behind (ingest.admission), without a
server: the share follows the lag, and a consumer three times too slow ends up with a lag that
stays near the threshold instead of swinging past it (as the on/off switch of before did)."""

from __future__ import annotations

from collections import deque

from ingest.admission import CEILING, DECREASE, EARLY, INCREASE_PER_S, TelemetryAdmission

THRESHOLD_S = 1.0
CHECK_S = 0.25


def admitted_of(admission: TelemetryAdmission, requests: int) -> int:
    return sum(admission.admit() for _ in range(requests))


def test_everything_is_let_in_while_the_lag_stays_low() -> None:
    admission = TelemetryAdmission()
    for lag_s in (0.1, 0.3, 0.45, 0.2):
        admission.observe(lag_s * THRESHOLD_S, THRESHOLD_S, CHECK_S)
    assert not admission.shedding
    assert admitted_of(admission, 1000) == 1000


def test_each_check_over_the_threshold_cuts_the_share() -> None:
    admission = TelemetryAdmission()
    admission.observe(1.5 * THRESHOLD_S, THRESHOLD_S, CHECK_S)
    admission.observe(1.4 * THRESHOLD_S, THRESHOLD_S, CHECK_S)  # over it, even if falling
    assert admission.share == DECREASE * DECREASE
    assert admission.shedding


def test_a_lag_rising_past_the_early_mark_cuts_the_share_and_a_falling_one_does_not() -> None:
    admission = TelemetryAdmission()
    admission.observe(0.4 * THRESHOLD_S, THRESHOLD_S, CHECK_S)
    admission.observe((EARLY + 0.1) * THRESHOLD_S, THRESHOLD_S, CHECK_S)  # rising, under 1 s
    assert admission.share == DECREASE
    admission.observe(EARLY * THRESHOLD_S + 0.05, THRESHOLD_S, CHECK_S)  # falling back
    assert admission.share == DECREASE + INCREASE_PER_S * CHECK_S


def test_requests_are_shed_evenly_in_the_share() -> None:
    admission = TelemetryAdmission(share=0.25)
    assert admitted_of(admission, 1000) == 250
    # evenly: every window of 4 requests lets one in, not 250 first and then none
    assert [admitted_of(admission, 4) for _ in range(10)] == [1] * 10


def test_a_stopped_consumer_gets_nothing() -> None:
    admission = TelemetryAdmission()
    admission.observe(CEILING * THRESHOLD_S, THRESHOLD_S, CHECK_S)
    assert admitted_of(admission, 1000) == 0


def test_the_share_creeps_back_while_the_lag_is_low() -> None:
    admission = TelemetryAdmission(share=0.5)
    for _ in range(4):  # one second
        admission.observe(0.1 * THRESHOLD_S, THRESHOLD_S, CHECK_S)
    assert abs(admission.share - (0.5 + INCREASE_PER_S)) < 1e-9
    for _ in range(100):
        admission.observe(0.0, THRESHOLD_S, CHECK_S)
    assert admission.share == 1.0
    assert not admission.shedding


def simulate(
    admission: TelemetryAdmission, offered_per_s: float, capacity_per_s: float, seconds: float
) -> tuple[float, float]:
    """A fluid model of ingest in front of one consumer: pings let in join a FIFO the consumer
    drains at its capacity; the lag is the age of the oldest ping not yet read. Returns the
    worst lag after the first 10 s and the share of the consumer's capacity that was used."""
    queue: deque[list[float]] = deque()  # [appended at, pings]
    step_s, now, worst, consumed = 0.01, 0.0, 0.0, 0.0
    next_check, requests_due = 0.0, 0.0
    while now < seconds:
        if now >= next_check:
            lag = now - queue[0][0] if queue else 0.0
            admission.observe(lag, THRESHOLD_S, CHECK_S)
            next_check += CHECK_S
        requests_due += offered_per_s * step_s / 1000  # requests of 1,000 pings
        requests = int(requests_due)
        requests_due -= requests
        let_in = admitted_of(admission, requests) * 1000
        if let_in:
            queue.append([now, float(let_in)])
        budget = capacity_per_s * step_s
        while budget > 0 and queue:
            take = min(budget, queue[0][1])
            queue[0][1] -= take
            budget -= take
            if now >= 10:
                consumed += take
            if queue[0][1] <= 0:
                queue.popleft()
        now += step_s
        if now >= 10 and queue:
            worst = max(worst, now - queue[0][0])
    return worst, consumed / (capacity_per_s * (seconds - 10))


def test_three_times_too_much_telemetry_keeps_the_lag_near_the_threshold() -> None:
    worst_lag, used = simulate(TelemetryAdmission(), 120_000, 40_000, seconds=60)
    assert worst_lag < 1.5 * THRESHOLD_S, worst_lag
    assert used > 0.8, used  # shedding does not starve the consumer either


def test_an_on_off_switch_would_not_have_held_it() -> None:
    # the contrast: what the on/off shedding of before did in the same model (share 1 or 0)
    class OnOff(TelemetryAdmission):
        def observe(self, lag_s: float, threshold_s: float, interval_s: float) -> None:
            self.share = 0.0 if lag_s > threshold_s else 1.0

    worst_lag, _ = simulate(OnOff(), 120_000, 40_000, seconds=60)
    assert worst_lag > 2 * THRESHOLD_S, worst_lag
