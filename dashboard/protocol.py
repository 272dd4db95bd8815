"""The feed's wire format and `apply_delta`, the rule the page mirrors in app.js.

Messages (JSON text frames):
  snapshot  {"kind":"snapshot","epoch","seq","market","limits","drivers","rides","surge","kpis",
             "services","events","series"}
  delta     {"kind":"delta","seq", and only what changed: "drivers"|"rides"|"surge":
             {"upsert":[...],"remove":[ids]}, "kpis", "services", "events":[new...],
             "series_point":{"t","telemetry_per_s","ride_events_per_s","lag":{group: n}}}
Applying every delta after a snapshot, in seq order, gives the snapshot of that later seq.
A socket follows one market (`/ws?market=`); the snapshot's "market" says which, and its
"markets" lists every market this dashboard serves (the page's market switch).

On the wire a driver is a row, not an object: [id, lat, lon, status, heading] (DRIVER_FIELDS),
in the snapshot's "drivers" list and a delta's drivers "upsert". Drivers are most of every
frame, and rows are about half the bytes of objects that repeat their keys. `decode` (and
feed.js `decode`) turn rows back into the objects `apply_delta` and the page work with."""

from __future__ import annotations

from typing import Any

import orjson

from dashboard.series import append_point, copy_series

Message = dict[str, Any]
KEYED = (("drivers", "id"), ("rides", "ride_id"), ("surge", "cell"))


class SequenceGap(Exception):
    """A delta that does not follow the snapshot: the client needs a fresh snapshot."""


DRIVER_FIELDS = ("id", "lat", "lon", "status", "heading")


def encode(message: Message) -> str:
    """The frame's text, built once per tick and sent as-is to every client."""
    drivers = message.get("drivers")
    if isinstance(drivers, list):
        message = {**message, "drivers": _rows(drivers)}
    elif isinstance(drivers, dict) and "upsert" in drivers:
        message = {**message, "drivers": {**drivers, "upsert": _rows(drivers["upsert"])}}
    return orjson.dumps(message).decode()


def decode(text: str | bytes) -> Message:
    """A frame as `encode` got it: driver rows back to objects."""
    message: Message = orjson.loads(text)
    drivers = message.get("drivers")
    if isinstance(drivers, list):
        message["drivers"] = _objects(drivers)
    elif isinstance(drivers, dict) and "upsert" in drivers:
        drivers["upsert"] = _objects(drivers["upsert"])
    return message


def _rows(drivers: list[dict[str, Any]]) -> list[list[Any]]:
    return [[driver[name] for name in DRIVER_FIELDS] for driver in drivers]


def _objects(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(DRIVER_FIELDS, row, strict=True)) for row in rows]


def _merge(
    items: list[dict[str, Any]], part: dict[str, list[Any]], key: str
) -> list[dict[str, Any]]:
    by_key = {item[key]: item for item in items}
    for gone in part.get("remove", ()):
        by_key.pop(gone, None)
    for item in part.get("upsert", ()):
        by_key[item[key]] = item
    return [by_key[k] for k in sorted(by_key)]


def apply_delta(snapshot: Message, delta: Message) -> Message:
    """A new snapshot with `delta` applied; the input is not modified."""
    if delta["seq"] != snapshot["seq"] + 1:
        raise SequenceGap(f"delta {delta['seq']} does not follow snapshot {snapshot['seq']}")
    out = {**snapshot, "seq": delta["seq"]}
    for name, key in KEYED:
        if name in delta:
            out[name] = _merge(snapshot[name], delta[name], key)
    for name in ("kpis", "services"):
        if name in delta:
            out[name] = delta[name]
    if delta.get("events"):
        out["events"] = (snapshot["events"] + delta["events"])[-snapshot["limits"]["events"] :]
    if "series_point" in delta:
        out["series"] = copy_series(snapshot["series"])
        append_point(out["series"], delta["series_point"], snapshot["limits"]["series"])
    return out
