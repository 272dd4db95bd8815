"""The AsyncAPI document: valid AsyncAPI 3.0, true to the code, and never stale in the repo."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
from typer.testing import CliRunner

from ridepulse.bus.deadletter import dead_letter_fields
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.producer import stream_for
from ridepulse.cli_events import events_app
from ridepulse.contracts.asyncapi import (
    DEAD_LETTER_SCHEMA,
    ENVELOPE_SCHEMA,
    RECEIVES,
    build_asyncapi,
    render_asyncapi,
)
from ridepulse.contracts.envelope import FIELDS, Envelope
from ridepulse.contracts.registry import REGISTRY, channel_of, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.markets import load_markets

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = ROOT / "tests" / "vendor" / "asyncapi" / "3.0.0.json"


def _offline_registry() -> referencing.Registry[Any]:
    """Every reference must resolve inside the schema file itself: tests never use the network."""

    def refuse(uri: str) -> referencing.Resource[Any]:
        raise LookupError(f"tests do not fetch schemas: {uri}")

    return referencing.Registry(retrieve=refuse)  # type: ignore[call-arg]


def _pointer(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _validate_against(document: dict[str, Any], ref: str, instance: Any) -> None:
    """Validate `instance` with the schema at `ref`, resolving `#/components/...` in `document`."""
    schema = {"$ref": ref, "components": document["components"]}
    jsonschema.Draft7Validator(schema, registry=_offline_registry()).validate(instance)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_asyncapi(["sf"])


def test_document_validates_against_the_asyncapi_3_schema(document: dict[str, Any]) -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, registry=_offline_registry())
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]
    assert not errors, "not a valid AsyncAPI 3.0.0 document:\n" + "\n".join(errors)


def test_validation_rejects_an_invalid_document(document: dict[str, Any]) -> None:
    """Guards the test above against a schema that accepts anything."""
    broken = json.loads(json.dumps(document))
    broken["operations"]["ingest.send.rides"]["action"] = "publish"
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, registry=_offline_registry())
    assert not validator.is_valid(broken), "an AsyncAPI 2 action was accepted"


def test_committed_document_is_current() -> None:
    assert COMMITTED.exists(), f"{COMMITTED} is missing: run `ridepulse events asyncapi`"
    assert COMMITTED.read_text(encoding="utf-8") == render_asyncapi(), (
        "docs/asyncapi.yaml is stale (the contracts changed since it was generated): "
        "run `ridepulse events asyncapi` and commit the result"
    )


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    dangling = []
    for ref in _refs(document):
        try:
            _pointer(document, ref)
        except (KeyError, TypeError):
            dangling.append(ref)
    assert not dangling, f"references to nothing: {dangling}"


def test_every_type_and_version_is_a_message_on_its_stream(document: dict[str, Any]) -> None:
    for event_type, version in REGISTRY:
        key = f"{event_type}.v{version}"
        assert key in document["components"]["messages"], f"no message for {key}"
        channel = document["channels"][channel_of(event_type)]
        assert key in channel["messages"], f"{key} is not on channel {channel_of(event_type)}"


def test_channels_name_the_streams_producers_write(document: dict[str, Any]) -> None:
    market, global_keys = MarketKeys("sf"), GlobalKeys()
    for event_type, _ in REGISTRY:
        channel = document["channels"][channel_of(event_type)]
        written = stream_for(Envelope(event_type, "x/1", {}, "test"), market, global_keys)
        documented = channel.get("x-redis-keys", [channel["address"]])
        assert written in documented, (
            f"{event_type} is written to {written}, documented {documented}"
        )
    assert document["channels"]["deadLetters"]["address"] == global_keys.dead_letters


def test_channel_address_parameters_are_declared(document: dict[str, Any]) -> None:
    for name, channel in document["channels"].items():
        in_address = set(re.findall(r"{([^}]+)}", channel["address"]))
        assert in_address == set(channel.get("parameters", {})), name


def test_operation_messages_belong_to_their_channel(document: dict[str, Any]) -> None:
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)


# service → (its handlers module, the tables it wires; None: every table of the module)
WIRED: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "matching": ("matching.handlers", ("HANDLERS",)),
    "matching-geo": ("matching.handlers", ("GEO_HANDLERS",)),
    "eta": ("eta.handlers", None),
    "pricing": ("pricing.handlers", None),
}


@pytest.mark.parametrize("service", sorted(WIRED))
def test_documented_receivers_match_the_handler_tables(service: str) -> None:
    """The catalogue says what each consumer group acts on; its handler tables are the truth."""
    module, names = WIRED[service]
    handlers = pytest.importorskip(module, reason=f"{service} has no handlers yet")
    handled = {
        event_type
        for name, table in vars(handlers).items()
        if isinstance(table, HandlerTable) and (names is None or name in names)
        for event_type in (*table.per_event, *table.batch)
    }
    assert handled == set(RECEIVES[service]), (
        f"{service} handles {sorted(handled)}, the AsyncAPI catalogue says "
        f"{sorted(RECEIVES[service])}: update RECEIVES in ridepulse/contracts/asyncapi.py"
    )


def test_documented_driver_push_matches_the_ingest_notifier() -> None:
    notifier = pytest.importorskip("ingest.notifier", reason="ingest has no notifier yet")
    assert set(RECEIVES["ingest"]) == set(notifier.DRIVER_EVENTS)


def test_envelope_headers_document_every_stream_field() -> None:
    documented = set(ENVELOPE_SCHEMA["properties"]) | {"data"}
    assert documented == {f.decode() for f in FIELDS}


def test_dead_letter_schema_documents_every_field() -> None:
    fields = dead_letter_fields(
        stream="s", group="g", consumer="c", entry_id="1-0", fields=None, reason="r", deliveries=1
    )
    assert set(DEAD_LETTER_SCHEMA["properties"]) == {f.decode() for f in fields}
    verbatim = (
        dead_letter_fields(
            stream="s",
            group="g",
            consumer="c",
            entry_id="1-0",
            fields={b"type": b"ride.\xffrequested"},
            reason="r",
            deliveries=1,
        ).keys()
        - fields.keys()
    )
    (pattern,) = DEAD_LETTER_SCHEMA["patternProperties"]
    assert verbatim and all(re.match(pattern.encode(), f) for f in verbatim), verbatim


def test_a_real_event_matches_its_documented_headers_and_payload(
    document: dict[str, Any],
) -> None:
    envelope = make(
        "ride.requested",
        "ride/r1",
        {
            "ride_id": "r1",
            "rider_id": "u1",
            "pickup": {"lat": 37.77, "lon": -122.42},
            "dropoff": {"lat": 37.79, "lon": -122.40},
            "requested_at": 1,
            "deadline_at": 2,
            "version": 1,
        },
        "ingest@test",
    )
    message = document["components"]["messages"]["ride.requested.v1"]
    fields = {k.decode(): v.decode() for k, v in envelope.to_fields().items() if k != b"data"}
    headers: dict[str, Any] = {**fields, "v": int(fields["v"]), "time": int(fields["time"])}
    _validate_against(document, "#/components/messages/ride.requested.v1/headers", headers)
    _validate_against(document, message["payload"]["$ref"], envelope.data)
    with pytest.raises(jsonschema.ValidationError):
        _validate_against(document, message["payload"]["$ref"], {**envelope.data, "pickup": {}})


def test_cli_writes_the_same_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    result = CliRunner().invoke(events_app, ["asyncapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_asyncapi()


def test_cli_writes_one_json_schema_per_type_and_version(tmp_path: Path) -> None:
    result = CliRunner().invoke(events_app, ["schemas", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{t}.v{v}.json" for t, v in REGISTRY
    )


def test_channels_name_every_built_in_market_by_default() -> None:
    """The document describes the product, not the one market a default deployment runs."""
    every = [m.id for m in load_markets(only="all").markets]
    assert len(every) > 1
    rides = build_asyncapi()["channels"]["rides"]
    assert rides["parameters"]["market"]["enum"] == every
    assert rides["x-redis-keys"] == [MarketKeys(m).rides for m in every]


def test_cli_markets_option_narrows_the_channels(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    result = CliRunner().invoke(events_app, ["asyncapi", "--out", str(out), "--markets", "nyc"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_asyncapi(["nyc"])
    refused = CliRunner().invoke(events_app, ["asyncapi", "--out", str(out), "--markets", "la"])
    assert refused.exit_code != 0 and "unknown market" in refused.output, refused.output
