"""The charts' time series: a fixed window of one point per second, shared by the server state
and `apply_delta`, so both trim and pad identically."""

from __future__ import annotations

from typing import Any

Series = dict[str, Any]
COLUMNS = ("t", "telemetry_per_s", "ride_events_per_s")


def empty_series() -> Series:
    return {"t": [], "telemetry_per_s": [], "ride_events_per_s": [], "lag": {}}


def copy_series(series: Series) -> Series:
    out: Series = {name: list(series[name]) for name in COLUMNS}
    out["lag"] = {group: list(values) for group, values in series["lag"].items()}
    return out


def append_point(series: Series, point: dict[str, Any], limit: int) -> None:
    """Append in place; a group seen for the first time is padded with nulls, a group that is
    missing gets a null, and a group with no value left in the window is dropped."""
    lag: dict[str, list[Any]] = series["lag"]
    for group in point.get("lag", {}):
        if group not in lag:
            lag[group] = [None] * len(series["t"])
    for name in COLUMNS:
        series[name].append(point.get(name))
    for group, values in lag.items():
        values.append(point.get("lag", {}).get(group))
    excess = len(series["t"]) - limit
    if excess > 0:
        for name in COLUMNS:
            del series[name][:excess]
        for values in lag.values():
            del values[:excess]
    for group in [g for g, values in lag.items() if all(v is None for v in values)]:
        del lag[group]
