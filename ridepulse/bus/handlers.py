"""What a handler is. A handler is a plain typed function of (event, deps) that writes its
effects and returns the events to publish; it never acks, publishes or names a stream.

A table and the runtime that runs it are generic in the deps type, so a service's handlers,
its table and its runtime agree on one deps class (`HandlerTable[MatchingDeps]`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar  # a default, so a bare `ConsumerRuntime` means any deps

from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import Event

DepsT = TypeVar("DepsT", default=Any)

Outgoing = Sequence[Envelope] | None
Handler = Callable[[Event, DepsT], Awaitable[Outgoing]]
BatchHandler = Callable[[Sequence[Event], DepsT], Awaitable[Outgoing]]


@dataclass(frozen=True)
class HandlerTable(Generic[DepsT]):
    """Per-event handlers by type, and batch handlers for high-volume types (telemetry)."""

    per_event: Mapping[str, Handler[DepsT]] = field(default_factory=dict)
    batch: Mapping[str, BatchHandler[DepsT]] = field(default_factory=dict)

    def handles(self, event_type: str) -> bool:
        return event_type in self.per_event or event_type in self.batch
