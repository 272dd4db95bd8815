"""How much telemetry ingest lets in while dispatch is behind: a share steered by matching's
lag, not an on/off switch.

Why not on/off: at three times what the machine sustains, shedding every ping once matching
trailed by the threshold, and none once it was back under, made a sawtooth that peaked at 3-5 s
of lag: each switch-off came after a backlog had been let in, and the consumer draining it runs
behind every other process. Here the share is cut by DECREASE at each check that finds the lag
over the threshold, or already past EARLY of it and rising, and creeps back up at each other
check (additive increase, multiplicative decrease: how TCP finds a link's rate). Reacting to a
rising lag before it crosses the threshold is what keeps the peak near the threshold; cutting
only past it let the lag overshoot to 2-2.5 s at 120,000 pings/s. Where the early cut starts
is a trade: from half the threshold (as first built) the fluid model of the unit test peaks at
0.98 s at three times the consumer's rate, but near the capacity knee, where a consumer that
keeps up wanders between 0.3 and 0.65 s behind, every upswing past 0.5 s shed pings (12 % at
60,000 pings/s in the sweep of 2026-12-05 23:48, lag never over 0.5 s in its samples). From 0.6
the model peaks at 1.26 s (from 0.7, 1.49 s; a flood of the e2e test then reached 1.56 s on the
cluster, too near the 2 s that overload may cost). A consumer that stops
altogether (lag past CEILING thresholds) gets nothing at all, as before.

Pure: the watcher in ingest.shedding feeds it the lag; the routes ask it per request
(tests/unit/test_telemetry_admission.py models a consumer three times too slow)."""

from __future__ import annotations

from dataclasses import dataclass

DECREASE = 0.7  # share kept at each check that finds the lag over the threshold, or rising
INCREASE_PER_S = 0.1  # share regained per second while the lag is low or falling
EARLY = 0.6  # lag, in thresholds, from which a rising lag already cuts the share
CEILING = 2.0  # lag, in thresholds, past which nothing is let in


@dataclass
class TelemetryAdmission:
    """The share of telemetry requests let in, and which ones."""

    share: float = 1.0
    _credit: float = 0.0
    _last_lag_s: float = 0.0

    @property
    def shedding(self) -> bool:
        return self.share < 1.0

    def observe(self, lag_s: float, threshold_s: float, interval_s: float) -> None:
        """One check of the dispatch lag, `interval_s` after the last."""
        rising, self._last_lag_s = lag_s > self._last_lag_s, lag_s
        if lag_s >= CEILING * threshold_s:
            self.share = 0.0
        elif lag_s > threshold_s or (rising and lag_s > EARLY * threshold_s):
            self.share *= DECREASE
        else:
            self.share = min(1.0, self.share + INCREASE_PER_S * interval_s)
        if self.share >= 1.0:
            self._credit = 0.0

    def admit(self) -> bool:
        """Whether this request gets in: `share` of them, spread evenly. No randomness, so the
        same lags always shed the same requests (and a test can count them)."""
        if self.share >= 1.0:
            return True
        self._credit += self.share
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False
