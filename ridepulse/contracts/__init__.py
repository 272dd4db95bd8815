"""Event contracts: envelope, payload models, registry, AsyncAPI export."""

from ridepulse.contracts.envelope import Envelope, derived_event_id, new_event_id, now_ms
from ridepulse.contracts.registry import REGISTRY, Event, channel_of, decode, make

__all__ = [
    "REGISTRY",
    "Envelope",
    "Event",
    "channel_of",
    "decode",
    "derived_event_id",
    "make",
    "new_event_id",
    "now_ms",
]
