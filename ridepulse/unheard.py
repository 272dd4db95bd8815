"""When the server could not hear its drivers: a driver's silence counts only outside those times.

`drivers:seen` is stamped by the telemetry group of matching's geo index, and ingest sheds the
pings of every driver while that group (a `telemetry_shed_groups` one) trails the stream: a
consumer outage then looks like every driver falling silent at once. So each time the janitor
sweeps it measures those groups' lag; past `telemetry_shed_lag_s` (where shedding starts) the
stretch from the oldest entry they were not delivered until the next sweep that finds them
caught up is *unheard*. A driver is silent for `s` seconds when its last stamp is older than
`s` seconds of heard time: a driver silent that long before the outage is still released
during it, one that pinged until it began only once it has had `s` seconds to be heard again.

The platform's own deafness is unheard the same way: while Redis is unreachable or frozen, or
the whole platform (or the janitor) is down, no ping gets in and no group lags. The janitor
stamps each market's *heard-until* in Redis every pass (ridepulse/heard_until.py); a pass that
finds the stamp older than a few sweep intervals records [stamp, now] as an unheard stretch,
kept in Redis so a restarted janitor and every replica count it too (`add` merges it in)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UnheardTimes:
    """One market's unheard stretches, [start_ms, end_ms] in server time, ascending, disjoint."""

    stretches: list[tuple[int, int]] = field(default_factory=list)
    behind: bool = False
    last_sample_ms: int | None = None

    def add(self, start_ms: int, end_ms: int) -> None:
        """Count [start_ms, end_ms] as unheard, merged with the stretches it overlaps or meets."""
        kept = []
        for start, end in self.stretches:
            if end < start_ms or start > end_ms:
                kept.append((start, end))
            else:
                start_ms, end_ms = min(start, start_ms), max(end, end_ms)
        kept.append((start_ms, end_ms))
        self.stretches = sorted(kept)

    def observe(self, now_ms: int, lag_s: float, threshold_s: float) -> None:
        """One sample of the stamping groups' worst lag, taken at `now_ms`."""
        if self.behind and self.last_sample_ms is not None:
            self.add(self.last_sample_ms, now_ms)  # behind until this sample says otherwise
        was_healthy_at = None if self.behind else self.last_sample_ms
        self.behind = lag_s > threshold_s
        self.last_sample_ms = now_ms
        if not self.behind:
            return
        start = now_ms - int(lag_s * 1000)
        if was_healthy_at is not None:  # the last sample found it near the head then
            start = max(start, was_healthy_at - int(threshold_s * 1000))
        self.add(start, now_ms)

    def cutoff_ms(self, now_ms: int, silence_s: float) -> int:
        """The newest stamp that is `silence_s` of heard time old at `now_ms`."""
        needed = int(silence_s * 1000)
        at = now_ms
        for start, end in reversed(self.stretches):
            heard = at - min(end, at)
            if heard >= needed:
                break
            needed -= heard
            at = min(start, at)
        return at - needed

    def forget_before(self, at_ms: int) -> None:
        """Drop stretches that ended before `at_ms` (no cutoff looks back that far)."""
        self.stretches = [s for s in self.stretches if s[1] >= at_ms]
