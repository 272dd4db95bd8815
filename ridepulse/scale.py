"""`ridepulse up --scale` / `RIDEPULSE_SCALE`: how many replicas of which service, checked when
the settings load, so a bad value stops the command before anything starts."""

from __future__ import annotations

# Services `ridepulse up --scale` may start as N replicas: matching and matching-geo share their
# groups as they are (matching-geo's index keeps the newest ping whichever replica writes it);
# pricing and eta split the markets by lease (RIDEPULSE_LEASES=1, docs/scaling.md). ingest and
# the dashboard bind one port each.
SCALABLE = ("matching", "matching-geo", "pricing", "eta")
MAX_REPLICAS = 8


def parse_scale(text: str | None) -> dict[str, int]:
    """``"pricing=2,matching=3"`` → replicas per service; ValueError names what is wrong."""
    counts: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, count = part.strip().partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"takes service=count pairs, got {part.strip()!r}")
        if name not in SCALABLE:
            raise ValueError(f"{name!r} cannot run as replicas (only {', '.join(SCALABLE)})")
        replicas = int(count)
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(f"{name} needs 1 to {MAX_REPLICAS} replicas, got {replicas}")
        counts[name] = replicas
    return counts
