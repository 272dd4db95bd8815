"""The rush-hour load curve: ramp up, hold the peak, drain back down, then stop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RushHour:
    base_users: int = 30
    peak_users: int = 300
    ramp_s: float = 120.0
    peak_s: float = 300.0
    drain_s: float = 120.0

    @property
    def duration_s(self) -> float:
        return self.ramp_s + self.peak_s + self.drain_s

    def users_at(self, t_s: float) -> int | None:
        """Target user count `t_s` into the run; None once the rush is over (the test stops)."""
        if t_s < 0 or t_s >= self.duration_s:
            return None
        span = self.peak_users - self.base_users
        if t_s < self.ramp_s:
            return self.base_users + round(span * t_s / self.ramp_s)
        if t_s < self.ramp_s + self.peak_s:
            return self.peak_users
        left = self.duration_s - t_s
        return self.base_users + round(span * left / self.drain_s)

    def spawn_rate(self) -> float:
        """Fast enough to follow the curve each second, never slower than 1 user/s."""
        span = max(1, self.peak_users - self.base_users)
        return max(1.0, span / max(1.0, min(self.ramp_s, self.drain_s)) * 2)
