"""The load test's pass/fail rule: few failures, fast API calls, and no ride left hanging."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED_RIDES = 20


@dataclass(frozen=True, slots=True)
class SloLimits:
    max_fail_ratio: float = 0.01
    max_p95_ms: float = 500.0


def breaches(
    *, fail_ratio: float, p95_ms: float, requests: int, stuck_ride_ids: list[str], limits: SloLimits
) -> list[str]:
    """Why the run fails, one line per broken objective; empty when it passes."""
    reasons = []
    if requests == 0:
        reasons.append("no API requests were made: the run measured nothing")
    if fail_ratio > limits.max_fail_ratio:
        reasons.append(f"failure ratio {fail_ratio:.2%} > {limits.max_fail_ratio:.2%}")
    if p95_ms > limits.max_p95_ms:
        reasons.append(f"p95 of HTTP calls under load {p95_ms:.0f} ms > {limits.max_p95_ms:.0f} ms")
    if stuck_ride_ids:
        shown = ", ".join(stuck_ride_ids[:MAX_LISTED_RIDES])
        more = len(stuck_ride_ids) - MAX_LISTED_RIDES
        reasons.append(
            f"{len(stuck_ride_ids)} ride(s) never reached a terminal state: {shown}"
            + (f" (+{more} more)" if more > 0 else "")
        )
    return reasons
