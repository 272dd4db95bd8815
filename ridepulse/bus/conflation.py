"""Latest position wins: telemetry is a position feed, so a consumer that reads many entries at
once keeps only each driver's newest ping (matching's index), or the pings of a short window
before it (eta's speeds), and skips the rest before they are validated or written.

A skipped ping is `conflated`, not lost: a newer ping of the same driver in the same read
carries the information it had. Conflation is per read, so at normal load (a few entries a
read) it changes nothing that the handlers did not already drop; when the consumer falls
behind it reads bigger slices (ridepulse.bus.consumer), and the bigger the slice the more it
skips — cost then follows the number of drivers, not the number of pings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

LOCATION_TYPE = b"driver.location"


@dataclass(frozen=True, slots=True)
class Conflation:
    """How much of a driver's recent history a consumer keeps: its newest ping, plus those
    within `window_ms` of it (0: the newest only)."""

    window_ms: int = 0


def _pings_of(fields: dict[bytes, bytes]) -> tuple[dict[str, Any], list[Any]] | None:
    """The entry's JSON payload and its pings, or None if this is not a well-formed location
    entry (the runtime's full decode then dead-letters it with the reason)."""
    if fields.get(b"type") != LOCATION_TYPE:
        return None
    try:
        data = orjson.loads(fields[b"data"])
    except (KeyError, orjson.JSONDecodeError):
        return None
    pings = data.get("pings") if isinstance(data, dict) else None
    if not isinstance(pings, list):
        return None
    for ping in pings:  # only what conflation reads; the full check comes on what is kept
        if not (
            isinstance(ping, dict)
            and isinstance(ping.get("driver_id"), str)
            and type(ping.get("ts")) is int
        ):
            return None
    return data, pings


def conflate(
    bodies: Sequence[dict[bytes, bytes] | None], policy: Conflation
) -> tuple[list[dict[bytes, bytes] | None], list[int]]:
    """Entry bodies (stream order) → the same bodies with superseded pings removed, and how
    many were removed from each. Bodies that are not well-formed location entries pass
    unchanged."""
    parsed = [_pings_of(f) if f is not None else None for f in bodies]
    newest: dict[str, int] = {}
    for entry in parsed:
        if entry is None:
            continue
        for ping in entry[1]:
            driver, ts = ping["driver_id"], ping["ts"]
            if ts > newest.get(driver, -1):
                newest[driver] = ts
    window = policy.window_ms
    kept_newest: set[str] = set()  # window 0: one ping per driver even if two share a ts
    out: list[dict[bytes, bytes] | None] = list(bodies)
    dropped = [0] * len(bodies)
    for index in range(len(parsed) - 1, -1, -1):  # newest entry first
        entry = parsed[index]
        fields = bodies[index]
        if entry is None or fields is None:
            continue
        data, pings = entry
        kept: list[Any] = []
        for ping in reversed(pings):
            driver, ts = ping["driver_id"], ping["ts"]
            top = newest[driver]
            if window:
                keep = ts >= top - window
            else:
                keep = ts == top and driver not in kept_newest
                if keep:
                    kept_newest.add(driver)
            if keep:
                kept.append(ping)
        if len(kept) == len(pings):
            continue
        dropped[index] = len(pings) - len(kept)
        kept.reverse()
        data["pings"] = kept
        out[index] = {**fields, b"data": orjson.dumps(data)}
    return out, dropped


def catch_up_read_size(
    oldest_ms: int, newest_ms: int, entries: int, now_ms: int, *, floor: int, cap: int
) -> int:
    """Entries the next catch-up read should take: the whole backlog left behind the last read,
    at the rate its entries were written, between `floor` and `cap`.

    Why not a fixed size: conflation only finds a superseded ping when the read also holds the
    driver's next one. A fleet pinging every 4 s at 40,000 pings/s writes 160 entries of 1,000
    pings between a driver's two pings; reads of 50 entries then never hold a driver twice, and
    a consumer 5 s behind conflates nothing (seen in the capacity sweep)."""
    if entries < 2 or newest_ms <= oldest_ms:
        return floor
    per_ms = (entries - 1) / (newest_ms - oldest_ms)
    behind = per_ms * max(now_ms - newest_ms, 0)
    return max(floor, min(cap, entries + int(behind)))
