"""Custom locust samples (RIDE metrics, WebSocket calls, stuck rides) through one typed door."""

from __future__ import annotations

from collections.abc import Callable

from locust.env import Environment


def fire_sample(
    environment: Environment,
    request_type: str,
    name: str,
    response_time_ms: float,
    *,
    response_length: int = 0,
    exception: BaseException | str | None = None,
) -> None:
    """Record one sample in locust's stats, exactly as an HTTP call would be."""
    fire: Callable[..., object] = environment.events.request.fire  # locust's hook is untyped
    fire(
        request_type=request_type,
        name=name,
        response_time=response_time_ms,
        response_length=response_length,
        exception=exception,
        context={},
    )
