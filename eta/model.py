"""The speed model: how fast traffic moves in each H3 cell, learned from driver telemetry.

Pure and synchronous — the eta service feeds it pings and persists ``snapshot()`` as a hash.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import h3

from ridepulse.contracts.telemetry_decode import PingLike
from ridepulse.geo import DEFAULT_RESOLUTION, haversine_m
from ridepulse.travel import DEFAULT_SPEED_MPS, travel_time_s

MAX_PLAUSIBLE_SPEED_MPS = 45.0  # ~160 km/h: faster is a GPS jump, not a car
MIN_MOVING_SPEED_MPS = 0.5  # below this a driver is parked or waiting, not telling us traffic speed
MAX_PING_GAP_MS = 60_000  # older than this, the previous ping says nothing about the path between
# A speed is derived over at least this long. GPS fixes jitter by ~5 m, and jitter only ever adds
# distance: over a 3 s hop at 4 m/s it inflates the speed by 10% or more, over 10 s by ~1%.
MIN_BASELINE_MS = 10_000
# Per-sample weight of the EWMA. 0.02 remembers ~50 samples (half-life ~35): enough to average
# several cars and a car's own stop-and-go through a light, yet a busy cell (a handful of
# drivers pinging every 2 s) re-learns a change in traffic within a minute or two.
DEFAULT_ALPHA = 0.02


class SpeedModel:
    """Per-cell exponentially weighted mean of observed speeds, with a default for unseen cells.

    A sample is the speed the device reports when plausible, else the distance over time from
    the driver's anchor fix at least MIN_BASELINE_MS earlier. Until a cell has 1/alpha samples
    its weight is 1/n, so early estimates are the plain mean, not a blend with a made-up prior.
    """

    def __init__(
        self,
        resolution: int = DEFAULT_RESOLUTION,
        alpha: float = DEFAULT_ALPHA,
        default_speed_mps: float = DEFAULT_SPEED_MPS,
        learn_interval_ms: int = 0,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.resolution = resolution
        self.alpha = alpha
        self.default_speed_mps = default_speed_mps
        # Learning is eta's main CPU cost (43% at fleet scale): a driver's pings a second or two
        # apart tell the same speed, so a sample every few seconds per driver is enough.
        self.learn_interval_ms = learn_interval_ms
        self._speed: dict[str, float] = {}
        self._samples: dict[str, int] = {}
        self._last: dict[str, tuple[int, float, float, int]] = {}
        self._newest_ts = 0  # newest fix of any driver: the model's own clock, immune to lag

    def observe_batch(self, pings: Iterable[PingLike]) -> int:
        """Learn from pings (in any batch order; per driver, time order); returns samples used."""
        last, speed, samples = self._last, self._speed, self._samples
        alpha, warm = self.alpha, 1.0 / self.alpha
        to_cell, distance = h3.latlng_to_cell, haversine_m
        used = 0
        interval = self.learn_interval_ms
        for ping in pings:
            driver, ts = ping.driver_id, ping.ts
            prev = last.get(driver)  # (anchor ts, anchor lat, anchor lon, newest ts)
            if prev is not None and ts <= prev[3]:
                continue  # duplicate or out of order: the newer fix already stands
            if interval and prev is not None and ts - prev[3] < interval:
                continue  # sampled out: too soon after the last fix this driver taught
            lat, lon = ping.lat, ping.lon
            if ts > self._newest_ts:
                self._newest_ts = ts
            observed = ping.speed_mps
            cell = ""
            if observed is not None and 0.0 <= observed <= MAX_PLAUSIBLE_SPEED_MPS:
                cell = to_cell(lat, lon, self.resolution)
            if prev is None or ts - prev[0] > MAX_PING_GAP_MS:
                last[driver] = (ts, lat, lon, ts)
            elif ts - prev[0] < MIN_BASELINE_MS:
                # Too short to measure: keep the anchor so the baseline grows.
                last[driver] = (prev[0], prev[1], prev[2], ts)
            else:
                last[driver] = (ts, lat, lon, ts)
                if not cell:
                    observed = distance(prev[1], prev[2], lat, lon) * 1000.0 / (ts - prev[0])
                    if observed > MAX_PLAUSIBLE_SPEED_MPS:
                        continue  # a GPS jump; the next baseline starts after it
                    # The speed held between the two fixes: credit the cell of the midpoint.
                    cell = to_cell((prev[1] + lat) / 2, (prev[2] + lon) / 2, self.resolution)
            if not cell or observed is None:
                continue
            if observed < MIN_MOVING_SPEED_MPS:
                continue
            n = samples.get(cell, 0) + 1
            samples[cell] = n
            mean = speed.get(cell, observed)
            speed[cell] = mean + (observed - mean) * (alpha if n > warm else 1.0 / n)
            used += 1
        return used

    def speed_of(self, cell: str) -> float:
        """Learned speed of a cell in m/s, or the default where nothing was observed."""
        return self._speed.get(cell, self.default_speed_mps)

    def forget_idle(self) -> int:
        """Drop drivers silent for MAX_PING_GAP_MS behind the newest fix seen (their anchor could
        not make a sample any more), so memory follows the fleet even when nobody goes offline.
        Measured on the pings' own clock, so a consumer catching up on a backlog keeps its
        anchors."""
        cutoff = self._newest_ts - MAX_PING_GAP_MS
        idle = [driver for driver, fix in self._last.items() if fix[3] < cutoff]
        for driver in idle:
            del self._last[driver]
        return len(idle)

    def snapshot(self) -> dict[str, float]:
        """Per-cell speeds in m/s, to persist as a hash."""
        return dict(self._speed)

    def restore(self, speeds: Mapping[str, float]) -> None:
        """Load persisted speeds, each counted as a warmed-up mean (one sample cannot erase it)."""
        warm = math.ceil(1.0 / self.alpha)
        for cell, value in speeds.items():
            mps = float(value)
            if math.isfinite(mps) and MIN_MOVING_SPEED_MPS <= mps <= MAX_PLAUSIBLE_SPEED_MPS:
                self._speed[cell] = mps
                self._samples[cell] = warm

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float:
        return travel_time_s(from_lat, from_lon, to_lat, to_lon, self.speed_of, self.resolution)


ETA_MIN_INTERVAL_MS = 5_000
ETA_MIN_CHANGE_RATIO = 0.10
ETA_MIN_CHANGE_S = 15.0


def eta_should_update(
    prev_eta_s: float | None, new_eta_s: float, last_sent_ms: int | None, now_ms: int
) -> bool:
    """Whether to publish a new ETA: the first one always; later ones at most every 5 s, and
    only when they moved by 10% or 15 s — riders see a steady countdown, not GPS jitter."""
    if prev_eta_s is None or last_sent_ms is None:
        return True
    if now_ms - last_sent_ms < ETA_MIN_INTERVAL_MS:
        return False
    change_s = abs(new_eta_s - prev_eta_s)
    if change_s == 0.0:
        return False
    return change_s >= ETA_MIN_CHANGE_S or change_s >= ETA_MIN_CHANGE_RATIO * prev_eta_s
