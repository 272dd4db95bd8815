"""The AsyncAPI 3.0 event catalogue, generated from the registry so it cannot drift from the code:
one channel per stream, one message per (type, version), one operation per service and stream.

A Redis key's hash tag `{market}` is also AsyncAPI's address-expression syntax, so a market
stream's address is its key template with a `market` parameter (`rp:{market}:rides`). Unlike
ordinary parameter substitution, the braces stay in the real key (`rp:{sf}:rides`); each channel
lists its concrete keys under `x-redis-keys`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from ridepulse.bus.deadletter import DEAD_LETTER_FIELDS
from ridepulse.contracts.envelope import FIELDS
from ridepulse.contracts.registry import REGISTRY, channel_of
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.markets import load_markets
from ridepulse.services import SERVICE_NAMES

SCHEMAS = "#/components/schemas/"
DEAD_LETTERS = "deadLetters"

# Who publishes and who reacts to each event type. tests/unit/test_asyncapi.py holds SENDS and
# HEARTBEATING to what each service's code emits (its ride steps, its events, its heartbeat) and
# RECEIVES to the consumer services' handler tables; a group still reads (and acks) every entry.
SENDS: dict[str, tuple[str, ...]] = {
    "ingest": (
        "driver.location",
        "driver.status",
        "ride.requested",
        "ride.matched",
        "ride.unmatched",
        "ride.driver_arrived",
        "ride.started",
        "ride.completed",
        "ride.cancelled",
        "ride.expired",  # a driver's decline past the ride's deadline expires it
    ),
    "matching": ("ride.offered", "ride.unmatched", "ride.expired"),
    "eta": ("eta.updated",),
    "pricing": ("surge.updated",),
    # rides taken back from silent drivers (cause driver_lost), departed drivers gone offline
    "janitor": ("ride.unmatched", "ride.cancelled", "driver.status"),
}
RECEIVES: dict[str, tuple[str, ...]] = {
    "ingest": (  # pushed to the connected driver's app
        "ride.offered",
        "ride.matched",
        "ride.unmatched",
        "ride.driver_arrived",
        "ride.started",
        "ride.completed",
        "ride.cancelled",
        "ride.expired",
        "eta.updated",
    ),
    "matching": ("ride.requested", "ride.unmatched"),
    "matching-geo": ("driver.location",),
    "eta": (
        "driver.location",
        "ride.matched",
        "ride.driver_arrived",
        "ride.started",
        "ride.completed",
        "ride.cancelled",
        "ride.unmatched",
    ),
    "pricing": ("ride.requested",),  # supply: matching's geo index, read per tick
    "dashboard": tuple(dict.fromkeys(t for t, _ in REGISTRY)),
}
# These read every event from the last id (XREAD, no group): each replica must see them all.
BROADCAST_READERS = ("ingest", "dashboard")
# Consumer-group services move poison entries to the dead-letter stream.
DEAD_LETTERING = ("matching", "matching-geo", "eta", "pricing")
# Every service but the dashboard, which only looks (its Redis user may not write).
HEARTBEATING = ("ingest", "matching", "matching-geo", "eta", "pricing", "janitor")
HEARTBEAT = "service.heartbeat"

_MARKET_STREAMS = {
    "telemetry": "telemetry",
    "rides": "rides",
    "eta": "eta_events",
    "surge": "surge_events",
}
_CHANNEL_NOTES = {
    "telemetry": "Driver pings, many per entry. Capped on append (approximate MAXLEN): "
    "an old ping is worthless once a newer one arrived.",
    "rides": "Ride and driver lifecycle. Never capped: the janitor trims only below what every "
    "consumer group has acknowledged, so no ride event is lost to a lagging group.",
    "eta": "Pickup and trip ETAs of active rides. Capped on append; readers keep their own state.",
    "surge": "Changed surge multipliers per H3 cell. Capped on append; the current values live "
    "in the surge read model.",
    "health": "Every service's heartbeat (who, what it processed, its lag). Global, capped.",
    DEAD_LETTERS: "Entries that failed validation or their last delivery, with the reason and the "
    "original fields, already acknowledged in their group. Global, capped; for inspection.",
}

_GLOBAL_TITLES = {"health": "health stream (global)", DEAD_LETTERS: "dead-letter stream (global)"}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents binary mode: each attribute is a stream field beside `data`, "
    "which holds the payload as JSON. Every entry carries the same fields, so Redis shares "
    "their names in its listpack encoding.",
    "required": ["id", "type", "v", "source", "time", "subject"],
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "Unique, time-ordered "
            "(UUIDv7; UUIDv5 when derived from a cause event). The idempotency key: a stream "
            "entry id is not, since a retried XADD can append the same event twice.",
        },
        "type": {"type": "string", "description": "Event type, e.g. `ride.requested`."},
        "v": {
            "type": "integer",
            "minimum": 1,
            "description": "Schema version of `data` (decimal digits in the stream field).",
        },
        "source": {
            "type": "string",
            "description": "The producing service instance, `<service>/<instance>`: "
            "`matching/matching-1` (the consumer name), `ingest/<host>/<pid>`. A heartbeat's is "
            "its consumer name alone (`matching-1`); its service is in `subject`.",
        },
        "time": {
            "type": "integer",
            "description": "When it happened: epoch milliseconds, UTC "
            "(decimal digits in the stream field).",
        },
        "subject": {
            "type": "string",
            "description": "The entity: `ride/<id>`, `driver/<id>`, `market/<id>` "
            "(surge), `service/<name>` (heartbeat).",
        },
        "traceparent": {
            "type": "string",
            "description": "W3C trace context; empty when none.",
            "pattern": "^([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})?$",
        },
    },
}

DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A dead-letter entry is a flat map of stream fields, not an event envelope.",
    "required": list(DEAD_LETTER_FIELDS),
    "properties": {
        "stream": {"type": "string", "description": "The stream the entry came from."},
        "group": {"type": "string", "description": "The consumer group that gave up on it."},
        "consumer": {"type": "string", "description": "The consumer that last held it."},
        "entry_id": {"type": "string", "description": "Its stream entry id."},
        "event_id": {"type": "string", "description": "Its envelope `id`; empty if unreadable."},
        "type": {"type": "string", "description": "Its envelope `type`; empty if unreadable."},
        "reason": {"type": "string", "description": "The validation error or the last failure."},
        "deliveries": {"type": "integer", "description": "Deliveries before it was moved."},
        "time": {"type": "integer", "description": "When it was moved, epoch ms."},
        "original": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "The original entry's fields, as JSON, for reading: bytes that are "
            "not UTF-8 shown as U+FFFD.",
        },
    },
    "patternProperties": {
        "^original:": {
            "type": "string",
            "description": "One field of the original entry under its own name after the "
            "prefix, byte for byte (bytes, not necessarily UTF-8): what a replay appends. "
            "Absent from dead letters written before they were kept.",
        },
    },
}


def _message_key(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}"


def _payload_schemas() -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, Any]]:
    """Every payload model in one pass, so shared models (Point, Ping) become one component,
    named without collisions, and `$ref`s point into components/schemas, not a local `$defs`."""
    keys = list(REGISTRY)
    refs, top = models_json_schema(
        [(REGISTRY[k], "validation") for k in keys], ref_template=SCHEMAS + "{model}"
    )
    by_key = {k: refs[(REGISTRY[k], "validation")] for k in keys}
    return by_key, dict(top.get("$defs", {}))


def _message(event_type: str, version: int, payload_ref: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": _message_key(event_type, version),
        "title": f"{event_type} v{version}",
        "contentType": "application/json",
        "headers": {
            "allOf": [
                {"$ref": SCHEMAS + "Envelope"},
                {"properties": {"type": {"const": event_type}, "v": {"const": version}}},
            ]
        },
        "payload": payload_ref,
    }
    doc = REGISTRY[(event_type, version)].__dict__.get("__doc__")
    if doc:
        message["summary"] = inspect.cleandoc(doc).splitlines()[0]
    return message


def _channels(markets: Sequence[str], prefix: str) -> dict[str, dict[str, Any]]:
    channels: dict[str, dict[str, Any]] = {}
    for name, attr in _MARKET_STREAMS.items():
        channels[name] = {
            "address": getattr(MarketKeys("market", prefix), attr),
            "title": f"{name} stream of a market",
            "description": _CHANNEL_NOTES[name],
            "parameters": {
                "market": {
                    "description": "Market id; its braces are the Redis Cluster hash tag and "
                    "stay in the key.",
                    "enum": list(markets),
                    "default": markets[0],
                }
            },
            "messages": {},
            "x-redis-keys": [getattr(MarketKeys(m, prefix), attr) for m in markets],
        }
    global_keys = GlobalKeys(prefix)
    for name, address in (("health", global_keys.health), (DEAD_LETTERS, global_keys.dead_letters)):
        channels[name] = {
            "address": address,
            "title": _GLOBAL_TITLES[name],
            "description": _CHANNEL_NOTES[name],
            "messages": {},
        }
    channels[DEAD_LETTERS]["messages"]["deadLetter"] = {"$ref": "#/components/messages/deadLetter"}
    return channels


def _how(service: str, action: str) -> str:
    if action == "send":
        return "appends (XADD)"
    if service in BROADCAST_READERS:
        return "reads from the last id (XREAD, no group): one reader per process, fanned out"
    return "reads through its own consumer group, acknowledging after its effects are written"


def _operation(
    service: str, action: str, channel: str, message_keys: Sequence[str]
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": f"{service} {_how(service, action)}.",
        "messages": [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in message_keys],
        "tags": [{"name": service}],
    }


def _operations() -> dict[str, dict[str, Any]]:
    """Operations grouped by service, in SERVICE_NAMES order: what each one writes, then reads."""
    versions: dict[str, list[int]] = {}
    for event_type, version in sorted(REGISTRY):
        versions.setdefault(event_type, []).append(version)
    plan: dict[tuple[str, str, str], list[str]] = {}
    sends = {
        s: (*SENDS.get(s, ()), *((HEARTBEAT,) if s in HEARTBEATING else ())) for s in SERVICE_NAMES
    }
    for action, table in (("send", sends), ("receive", RECEIVES)):
        for service, types in table.items():
            for event_type in types:
                # senders write the newest version; receivers accept every version in the streams
                chosen = versions[event_type][-1:] if action == "send" else versions[event_type]
                keys = plan.setdefault((service, action, channel_of(event_type)), [])
                keys += [_message_key(event_type, v) for v in chosen]
    for service in DEAD_LETTERING:
        plan[(service, "send", DEAD_LETTERS)] = ["deadLetter"]
    order = sorted(plan, key=lambda op: (SERVICE_NAMES.index(op[0]), op[1] != "send"))
    return {
        f"{service}.{action}.{channel}": _operation(
            service, action, channel, plan[service, action, channel]
        )
        for service, action, channel in order
    }


def _version() -> str:
    try:
        return metadata.version("ridepulse")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_asyncapi(markets: Sequence[str] | None = None, prefix: str = "rp") -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document; `markets` defaults to every built-in market: the document
    describes the product, not the one market a default deployment runs."""
    if markets is None:
        markets = [m.id for m in load_markets(only="all").markets]
    market_ids = list(markets)
    payload_refs, payload_defs = _payload_schemas()
    clash = payload_defs.keys() & {"Envelope", "DeadLetter"}
    if clash:
        raise ValueError(f"payload models named like the envelope schemas: {sorted(clash)}")
    channels = _channels(market_ids, prefix)
    messages: dict[str, Any] = {}
    for (event_type, version), ref in payload_refs.items():
        key = _message_key(event_type, version)
        messages[key] = _message(event_type, version, ref)
        channels[channel_of(event_type)]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
    messages["deadLetter"] = {
        "name": "deadLetter",
        "title": "dead letter",
        "summary": "A stream entry a consumer group gave up on, and why.",
        "payload": {"$ref": SCHEMAS + "DeadLetter"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "RidePulse events",
            "version": _version(),
            "description": "Every stream entry is one event in CloudEvents binary mode: the "
            "envelope attributes (message headers) are stream fields, the payload is the JSON "
            f"`data` field; the field set is always {', '.join(f.decode() for f in FIELDS)}. "
            "A new version of a type may only add optional fields; removing or retyping a "
            "field makes a new type. Entries that fail validation go to the dead-letter stream.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "127.0.0.1:{port}",
                "protocol": "redis",
                "description": "The private server `ridepulse up` starts: loopback only, auth on.",
                "variables": {"port": {"description": "A free port chosen at start."}},
            },
            "compose": {
                "host": "redis:6379",
                "protocol": "redis",
                "description": "Valkey in docker-compose.yml.",
            },
        },
        "channels": channels,
        "operations": _operations(),
        "components": {
            "schemas": {
                "Envelope": ENVELOPE_SCHEMA,
                "DeadLetter": DEAD_LETTER_SCHEMA,
                **payload_defs,
            },
            "messages": messages,
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-objects in full: YAML anchors would make the document hard to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = "# Generated from ridepulse/contracts by `ridepulse events asyncapi`; do not edit.\n"


def render_asyncapi(markets: Sequence[str] | None = None) -> str:
    return HEADER + yaml.dump(
        build_asyncapi(markets), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )


def write_asyncapi(path: Path, markets: Sequence[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_asyncapi(markets), encoding="utf-8")
