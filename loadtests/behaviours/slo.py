"""The load test's pass/fail rule: few failures, fast API calls, no crash in the simulation's
own code, and no ride left hanging."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_LISTED_RIDES = 20
# the last frame of a formatted traceback: where user code raised
_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


@dataclass(frozen=True, slots=True)
class SloLimits:
    max_fail_ratio: float = 0.01
    max_p95_ms: float = 500.0


def describe_exception(message: str, traceback: str, count: int) -> str:
    """One line for an exception locust caught in a user: its message and the frame that raised.

    Locust keeps only str(exception) and the stack (a worker sends the master no more), so the
    frame is what tells a ZeroDivisionError in a think time from one anywhere else.
    """
    frames = list(_FRAME.finditer(traceback))
    where = ""
    if frames:
        last = frames[-1]
        path = last["path"].replace("\\", "/")
        short = path[path.rfind("/loadtests/") + 1 :] if "/loadtests/" in path else path
        where = f" at {short}:{last['line']} in {last['func']}"
    times = "once" if count == 1 else f"{count} times"
    return f"{message or '(no message)'}{where} ({times})"


def breaches(
    *,
    fail_ratio: float,
    p95_ms: float,
    requests: int,
    stuck_ride_ids: list[str],
    limits: SloLimits,
    exceptions: Sequence[str] = (),
) -> list[str]:
    """Why the run fails, one line per broken objective; empty when it passes.

    `exceptions` are crashes in the simulation's own code (describe_exception): a user that
    raises stops doing its job, so whatever the other figures say, the run measured less than it
    claims.
    """
    reasons = []
    if exceptions:
        reasons.append(f"exceptions in user code: {'; '.join(exceptions)}")
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
