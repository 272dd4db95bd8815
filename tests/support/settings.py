"""Settings for tests that run the bus: its waits short enough for a test to watch them."""

from __future__ import annotations

from typing import Any

from ridepulse.settings import Settings

# Blocking reads of 200 ms, a failed entry retried after 50 ms, a dead consumer's entries
# claimed after 1 s, a heartbeat every 0.5 s: seconds where the defaults take minutes.
QUICK_BUS: dict[str, Any] = {
    "block_ms": 200,
    "retry_idle_ms": 50,
    "claim_idle_ms": 1000,
    "heartbeat_interval_s": 0.5,
}


def quick_bus_settings(**given: Any) -> Settings:
    """Settings with QUICK_BUS's waits, and `given` on top."""
    return Settings(**{**QUICK_BUS, **given})
