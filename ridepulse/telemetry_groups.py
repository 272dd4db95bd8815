"""The consumer groups on the telemetry streams, named once: the services create them under
these names, and RIDEPULSE_TELEMETRY_SHED_GROUPS may name only these, checked when the settings
load (a typo measured no group, so ingest never shed and the janitor never held its sweeps)."""

from __future__ import annotations

MATCHING_GEO = "matching.geo"  # matching's geo index (matching/geo_service.py)
ETA_SPEEDS = "eta.speeds"  # eta's speed model (eta/service.py)
TELEMETRY_GROUPS = (MATCHING_GEO, ETA_SPEEDS)


def parse_shed_groups(text: str) -> set[str]:
    """``"matching.geo, eta.speeds"`` → the group names; ValueError names an unknown one."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if unknown := sorted(names - set(TELEMETRY_GROUPS)):
        raise ValueError(
            f"unknown telemetry group {', '.join(map(repr, unknown))} "
            f"(the groups are {', '.join(TELEMETRY_GROUPS)})"
        )
    return names
