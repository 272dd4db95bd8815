"""The services panel: heartbeats → one row per service consumer, with processed/s and staleness."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Two sightings of one beat (health stream and heartbeat key) are a few ms apart: a rate over
# such a gap is noise, so the baseline only moves after this much time.
MIN_RATE_SPAN_MS = 250


@dataclass(slots=True)
class _Seen:
    beat: dict[str, Any]
    base_time: int
    base_processed: int
    rate: float | None = None
    expired: bool = False


class ServiceBoard:
    """Rows keyed by (service, consumer). `observe` takes a heartbeat from either source;
    `sync` applies the heartbeat key set: a removed key is a clean stop, an expired one a death."""

    def __init__(self, stale_after_ms: int) -> None:
        self.stale_after_ms = stale_after_ms
        self._seen: dict[tuple[str, str], _Seen] = {}

    def observe(self, beat: Mapping[str, Any]) -> None:
        key = (str(beat.get("service", "?")), str(beat.get("consumer", "?")))
        at, processed = int(beat.get("time") or 0), int(beat.get("processed") or 0)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(dict(beat), at, processed)
            return
        if at < seen.beat.get("time", 0):
            return  # an older sighting of a beat we already have
        seen.beat, seen.expired = dict(beat), False
        span = at - seen.base_time
        if span >= MIN_RATE_SPAN_MS:
            seen.rate = max(0.0, (processed - seen.base_processed) * 1000 / span)
            seen.base_time, seen.base_processed = at, processed

    def sync(self, beats: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> None:
        """`beats` holds every member of the heartbeat set; None where its key has expired."""
        for key in list(self._seen):
            if key not in beats:
                del self._seen[key]
        for key, beat in beats.items():
            if beat is not None:
                self.observe(beat)
            elif key in self._seen:
                self._seen[key].expired = True
            else:
                self._seen[key] = _Seen({"service": key[0], "consumer": key[1]}, 0, 0, None, True)

    def rows(self, now_ms: int) -> list[dict[str, Any]]:
        out = []
        for (service, consumer), seen in sorted(self._seen.items()):
            beat = seen.beat
            last_seen = int(beat["time"]) if beat.get("time") else None
            stale = seen.expired or last_seen is None or now_ms - last_seen > self.stale_after_ms
            out.append(
                {
                    "service": service,
                    "consumer": consumer,
                    "processed": int(beat.get("processed") or 0),
                    "processed_per_s": None if seen.rate is None else round(seen.rate, 1),
                    "failed": int(beat.get("failed") or 0),
                    "dead_lettered": int(beat.get("dead_lettered") or 0),
                    "lag": int(beat.get("lag") or 0),
                    "pending": int(beat.get("pending") or 0),
                    "last_seen": last_seen,
                    "stale": stale,
                }
            )
        return out
