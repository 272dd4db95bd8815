"""A driver app told to come back later stops pinging that long: the API's `Retry-After` over
HTTP, the error frame's `retry_after_s` over the WebSocket (a shed ping or one over the
driver's rate). Pure: the locust users feed it."""

from __future__ import annotations

from typing import Any


def frame_retry_after_s(message: dict[str, Any]) -> float:
    """The pause an error frame of the driver socket asks for; 0 for any other message."""
    if message.get("type") != "error":
        return 0.0
    value = message.get("retry_after_s")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return max(0.0, float(value))


class PingPause:
    """Until when pings wait; a second refusal extends the pause, never shortens it."""

    def __init__(self) -> None:
        self.until = 0.0

    def hold(self, seconds: float, now: float) -> None:
        if seconds > 0:
            self.until = max(self.until, now + seconds)

    def paused(self, now: float) -> bool:
        return now < self.until
