"""The registry: (type, version) → payload model, and typed decoding of envelopes."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import ValidationError

from ridepulse.contracts import events as ev
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.telemetry_decode import (
    decode_locations,
    decode_locations_json,
    refuse_future_pings,
)
from ridepulse.errors import InvalidEvent

P = TypeVar("P", bound=ev.Payload)
Q = TypeVar("Q", bound=ev.Payload)

REGISTRY: dict[tuple[str, int], type[ev.Payload]] = {
    ("driver.location", 1): ev.DriverLocationV1,
    ("driver.status", 1): ev.DriverStatusV1,
    ("ride.requested", 1): ev.RideRequestedV1,
    ("ride.offered", 1): ev.RideOfferedV1,
    ("ride.matched", 1): ev.RideMatchedV1,
    ("ride.unmatched", 1): ev.RideUnmatchedV1,
    ("ride.driver_arrived", 1): ev.RideDriverArrivedV1,
    ("ride.started", 1): ev.RideStartedV1,
    ("ride.completed", 1): ev.RideCompletedV1,
    ("ride.cancelled", 1): ev.RideCancelledV1,
    ("ride.expired", 1): ev.RideExpiredV1,
    ("eta.updated", 1): ev.EtaUpdatedV1,
    ("surge.updated", 1): ev.SurgeUpdatedV1,
    ("service.heartbeat", 1): ev.ServiceHeartbeatV1,
}

# Which stream of a market each type travels on (see ridepulse.keys.MarketKeys).
CHANNELS: dict[str, str] = {
    "driver.location": "telemetry",
    "driver.status": "rides",
    "eta.updated": "eta",
    "surge.updated": "surge",
    "service.heartbeat": "health",
}


def channel_of(event_type: str) -> str:
    return CHANNELS.get(event_type, "rides")


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event: the envelope plus its typed payload."""

    envelope: Envelope
    data: ev.Payload
    market: str = ""  # the market of the stream it was read from (set by the runtime)

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @overload
    def payload(self, model: builtins.type[P], /) -> P: ...
    @overload
    def payload(self, model: builtins.type[P], other: builtins.type[Q], /) -> P | Q: ...
    def payload(self, *models: builtins.type[ev.Payload]) -> ev.Payload:
        """The payload, typed as the model (or one of the two) a handler is written for;
        InvalidEvent when it is another (a handler wired to the wrong type or version)."""
        if isinstance(self.data, models):
            return self.data
        expected = " or ".join(m.__name__ for m in models)
        got = builtins.type(self.data).__name__
        raise InvalidEvent(f"{self.type}: payload is {got}, not {expected}")


def model_for(event_type: str, version: int) -> type[ev.Payload]:
    try:
        return REGISTRY[(event_type, version)]
    except KeyError:
        raise InvalidEvent(f"unknown event type/version: {event_type} v{version}") from None


def decode(fields: dict[bytes, bytes], market: str = "", appended_ms: int | None = None) -> Event:
    """Stream fields → validated Event; InvalidEvent (with reason) otherwise. `appended_ms`,
    the entry's id time, bounds its pings' stamps (refuse_future_pings)."""
    if fields.get(b"type") == b"driver.location" and fields.get(b"v") == b"1":
        # the high-volume type: its JSON goes straight into typed rows, with no dict and no
        # pydantic object per ping (the envelope's `data` stays empty)
        envelope = Envelope.from_fields(fields, parse_data=False)
        locations = decode_locations_json(fields[b"data"])
    else:
        envelope = Envelope.from_fields(fields)
        model = model_for(envelope.type, envelope.v)
        if model is not ev.DriverLocationV1:
            return Event(envelope, _validated(model, envelope), market)
        locations = decode_locations(envelope.data)  # spelt another way ("v": "01")
    if appended_ms is not None:
        refuse_future_pings(locations.pings, appended_ms)
    return Event(envelope, locations, market)


def _validated(model: type[ev.Payload], envelope: Envelope) -> ev.Payload:
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidEvent(f"{envelope.type} v{envelope.v}: {where}: {first['msg']}") from None


def make(
    event_type: str,
    subject: str,
    data: ev.Payload | dict[str, Any],
    source: str,
    *,
    version: int = 1,
    event_id: str | None = None,
    traceparent: str = "",
) -> Envelope:
    """Build an envelope for a registered type (the payload is checked against its model)."""
    model = model_for(event_type, version)
    payload = data if isinstance(data, model) else model.model_validate(data)
    kwargs: dict[str, Any] = {}
    if event_id is not None:
        kwargs["id"] = event_id
    return Envelope(
        type=event_type,
        subject=subject,
        data=payload.model_dump(mode="json", exclude_none=True),
        source=source,
        v=version,
        traceparent=traceparent,
        **kwargs,
    )


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every payload, keyed `type.vN`."""
    return {f"{t}.v{v}": m.model_json_schema() for (t, v), m in REGISTRY.items()}
