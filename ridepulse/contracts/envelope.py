"""The CloudEvents binary-mode envelope: attributes are stream fields, the payload one JSON field.

`time` is epoch milliseconds (an integer): cheap to compare, sortable, and what pings carry.
Every entry has the same eight fields, so Redis's listpack encoding shares the field names."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uuid_utils

from ridepulse.errors import InvalidEvent

FIELDS = (b"id", b"type", b"v", b"source", b"time", b"subject", b"data", b"traceparent")


def new_event_id() -> str:
    """A time-ordered UUIDv7: the idempotency key of an event."""
    return str(uuid_utils.uuid7())


def derived_event_id(cause_id: str, kind: str) -> str:
    """Deterministic id for an event caused by another, so a redelivered cause re-emits the
    same id and downstream dedupe holds (DESIGN §11: the event id is the identity)."""
    return str(uuid_utils.uuid5(uuid_utils.NAMESPACE_URL, f"{cause_id}/{kind}"))


def now_ms() -> int:
    return int(_time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event as it travels; `data` is the raw decoded JSON until validated."""

    type: str
    subject: str
    data: dict[str, Any]
    source: str
    v: int = 1
    id: str = field(default_factory=new_event_id)
    time: int = field(default_factory=now_ms)
    traceparent: str = ""

    def to_fields(self) -> dict[bytes, bytes]:
        return {
            b"id": self.id.encode(),
            b"type": self.type.encode(),
            b"v": str(self.v).encode(),
            b"source": self.source.encode(),
            b"time": str(self.time).encode(),
            b"subject": self.subject.encode(),
            b"data": orjson.dumps(self.data),
            b"traceparent": self.traceparent.encode(),
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes], *, parse_data: bool = True) -> Envelope:
        """Decode a stream entry; raises InvalidEvent with the reason on any defect. With
        `parse_data` False the `data` field is left to the caller (`data` is then empty): the
        telemetry decoder reads its JSON straight into typed rows, without a dict per ping."""
        missing = [f.decode() for f in FIELDS if f not in fields and f != b"traceparent"]
        if missing:
            raise InvalidEvent(f"missing fields: {', '.join(missing)}")
        data: dict[str, Any] = {}
        if parse_data:
            try:
                data = orjson.loads(fields[b"data"])
            except orjson.JSONDecodeError as exc:
                raise InvalidEvent(f"data is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise InvalidEvent("data is not a JSON object")
        try:
            version = int(fields[b"v"])
            at = int(fields[b"time"])
        except ValueError:
            raise InvalidEvent("v and time must be integers") from None
        return cls(
            id=fields[b"id"].decode(),
            type=fields[b"type"].decode(),
            v=version,
            source=fields[b"source"].decode(),
            time=at,
            subject=fields[b"subject"].decode(),
            data=data,
            traceparent=fields.get(b"traceparent", b"").decode(),
        )
