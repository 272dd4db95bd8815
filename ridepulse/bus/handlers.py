"""What a handler is. A handler is a plain typed function of (event, deps) that writes its
effects and returns the events to publish; it never acks, publishes or names a stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import Event

Outgoing = Sequence[Envelope] | None
Handler = Callable[[Event, Any], Awaitable[Outgoing]]
BatchHandler = Callable[[Sequence[Event], Any], Awaitable[Outgoing]]


@dataclass(frozen=True)
class HandlerTable:
    """Per-event handlers by type, and batch handlers for high-volume types (telemetry)."""

    per_event: Mapping[str, Handler] = field(default_factory=dict)
    batch: Mapping[str, BatchHandler] = field(default_factory=dict)

    def handles(self, event_type: str) -> bool:
        return event_type in self.per_event or event_type in self.batch
