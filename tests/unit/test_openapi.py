"""The published OpenAPI document: valid for a real validator, every $ref resolves, JSON
routes declare object bodies, errors declare the error body, and examples are accepted."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate

import ingest.openapi
from ingest.app import create_app
from ingest.schemas import DRIVER_ID_PATTERN
from ingest.validation import check_id, check_ping, check_point
from ridepulse.errors import InvalidInput
from ridepulse.http_errors import error_response
from ridepulse.settings import Settings

JsonDoc = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> JsonDoc:
    document: JsonDoc = create_app(Settings()).openapi()
    return document


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: JsonDoc, ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _operations(doc: JsonDoc) -> Iterator[tuple[str, str, JsonDoc]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _schema_with_components(doc: JsonDoc, schema: JsonDoc) -> JsonDoc:
    """A standalone JSON Schema: the components travel along so its refs resolve."""
    return {**schema, "components": doc["components"]}


def test_the_document_passes_openapi_spec_validator(doc: JsonDoc) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises OpenAPIValidationError with the path of the first fault


def test_every_ref_resolves_inside_the_document(doc: JsonDoc) -> None:
    refs = set(_refs(doc))
    assert refs, "the document has no refs at all: the check would prove nothing"
    assert not [r for r in refs if "$defs" in r], "pydantic-local refs leaked into the document"
    for ref in refs:
        _resolve(doc, ref)


def test_request_bodies_are_component_refs(doc: JsonDoc) -> None:
    bodies = {
        (path, method): op["requestBody"]["content"]["application/json"]["schema"]
        for path, method, op in _operations(doc)
        if "requestBody" in op
    }
    assert bodies == {
        ("/v1/drivers/{driver_id}/location", "post"): {"$ref": "#/components/schemas/PingIn"},
        ("/v1/telemetry", "post"): {"$ref": "#/components/schemas/TelemetryBatchIn"},
        ("/v1/drivers/{driver_id}/status", "put"): {"$ref": "#/components/schemas/DriverStatusIn"},
        ("/v1/rides", "post"): {"$ref": "#/components/schemas/RideRequestIn"},
    }


def test_json_responses_declare_objects_not_strings(doc: JsonDoc) -> None:
    for path, method, op in _operations(doc):
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                if media != "application/json":
                    continue
                schema = content["schema"]
                if "$ref" in schema:
                    schema = _resolve(doc, schema["$ref"])
                assert schema.get("type") == "object", f"{method} {path} {status}: {schema}"


def test_metrics_is_documented_as_plain_text(doc: JsonDoc) -> None:
    content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


# What each operation can answer, read from its code: declaring more (one shared set of errors
# did: a 409 on a read, a 404 on a quote) tells clients and fuzzers of answers that never come.
DECLARED_STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/drivers/{driver_id}/location"): {202, 401, 403, 413, 415, 422, 429, 503},
    ("post", "/v1/telemetry"): {202, 401, 403, 413, 415, 422, 429, 503},
    ("put", "/v1/drivers/{driver_id}/status"): {200, 401, 403, 409, 413, 415, 422, 503},
    ("get", "/v1/drivers/{driver_id}"): {200, 401, 403, 404, 422, 503},
    ("get", "/v1/quote"): {200, 401, 403, 422, 429, 503},
    ("post", "/v1/rides"): {202, 401, 403, 404, 409, 413, 415, 422, 429, 503},
    ("get", "/v1/rides/{ride_id}"): {200, 401, 404, 503},
    ("post", "/v1/rides/{ride_id}/cancel"): {200, 401, 403, 404, 409, 429, 503},
    **{
        ("post", f"/v1/rides/{{ride_id}}/{action}"): {200, 401, 403, 404, 409, 503}
        for action in ("accept", "decline", "arrived", "start", "complete")
    },
    ("get", "/healthz"): {200},
    ("get", "/readyz"): {200, 503},
    ("get", "/metrics"): {200},
}
# Where the server sends Retry-After: every 429 and 503 (an Idempotency-Key is checked in its
# market's ride script, atomically: no 409 for a first request still being answered elsewhere)
RETRY_AFTER_ON = {429, 503}
RETRY_AFTER_ALSO: dict[tuple[str, str], set[int]] = {}


def test_each_operation_declares_the_statuses_it_can_answer_and_no_other(doc: JsonDoc) -> None:
    declared = {
        (method, path): {int(status) for status in op["responses"]}
        for path, method, op in _operations(doc)
    }
    assert declared == DECLARED_STATUSES
    assert "HTTPValidationError" not in doc["components"]["schemas"], "FastAPI's own 422 body"


def test_retry_after_is_declared_wherever_the_server_sends_it(doc: JsonDoc) -> None:
    for path, method, op in _operations(doc):
        for status, response in op["responses"].items():
            sent = int(status) in RETRY_AFTER_ON | RETRY_AFTER_ALSO.get((method, path), set())
            declared = "Retry-After" in response.get("headers", {})
            assert declared == sent, f"{method} {path} {status}: Retry-After declared {declared}"


def test_authenticated_operations_declare_bearer_and_error_bodies(doc: JsonDoc) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    for path, method, op in _operations(doc):
        if not path.startswith("/v1/"):
            continue
        assert op["security"] == [{"bearerAuth": []}], f"{method} {path}"
        for status, response in op["responses"].items():
            if int(status) >= 400:
                declared = response["content"]["application/json"]["schema"]
                assert declared == error_ref, f"{method} {path} {status}"


def test_operation_ids_are_unique_and_links_point_at_real_operations(doc: JsonDoc) -> None:
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    links = doc["paths"]["/v1/rides"]["post"]["responses"]["202"]["links"]
    assert {link["operationId"] for link in links.values()} == {"get_ride", "cancel_ride"}
    for link in links.values():
        assert set(link["parameters"]) == {"ride_id"}
        assert link["parameters"]["ride_id"] == "$response.body#/ride_id"
    accepted = _resolve(doc, "#/components/schemas/RideAccepted")
    assert "ride_id" in accepted["required"]


def test_error_bodies_the_server_sends_match_the_error_schema(doc: JsonDoc) -> None:
    schema = _schema_with_components(doc, doc["components"]["schemas"]["ErrorOut"])
    for response in (
        error_response(422, "invalid_input", "lat must be a number", "pickup.lat"),
        error_response(404, "not_found", "ride x not found"),
        error_response(429, "overloaded", "slow down", retry_after_s=3),
    ):
        jsonschema.validate(orjson.loads(response.body), schema)


def test_documented_examples_are_valid_and_accepted_by_the_server(doc: JsonDoc) -> None:
    schemas = doc["components"]["schemas"]
    ping = schemas["PingIn"]["example"]
    jsonschema.validate(ping, _schema_with_components(doc, schemas["PingIn"]))
    # the example's ts is fixed: check it against a clock at that instant
    assert check_ping(ping, "drv-1", ping["ts"])["lat"] == ping["lat"]
    ride = schemas["RideRequestIn"]["example"]
    jsonschema.validate(ride, _schema_with_components(doc, schemas["RideRequestIn"]))
    assert check_point(ride["pickup"], "pickup") == (ride["pickup"]["lat"], ride["pickup"]["lon"])


async def test_docs_page_loads_swagger_ui_from_this_server() -> None:
    transport = httpx.ASGITransport(app=create_app(Settings()))  # no lifespan: no Redis needed
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        html = (await client.get("/docs")).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(assets) == 3, html  # script, styles, icon
        assert all(a.startswith("/") for a in assets), f"assets from elsewhere: {assets}"
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
        assert "https://" not in html
        assert (await client.get("/redoc")).status_code == 404  # ReDoc needs a CDN: not offered


def test_vendored_swagger_files_match_their_checksums() -> None:
    folder = Path(ingest.openapi.__file__).parent / "static" / "swagger-ui"
    listed = {}
    for line in (folder / "CHECKSUMS.sha256").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    present = {p.name for p in folder.iterdir()} - {"CHECKSUMS.sha256", "README.md"}
    assert present == set(listed), "every vendored file is listed in CHECKSUMS.sha256"


@given(st.from_regex(DRIVER_ID_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 64))
def test_every_documented_driver_id_is_accepted_by_the_server(driver_id: str) -> None:
    assert check_id(driver_id, "driver_id") == driver_id


@given(st.text(alphabet="._-", min_size=1, max_size=64))
def test_ids_of_punctuation_alone_are_outside_the_documented_pattern(driver_id: str) -> None:
    assert re.fullmatch(DRIVER_ID_PATTERN, driver_id) is None
    with pytest.raises(InvalidInput):
        check_id(driver_id, "driver_id")


@given(st.text(min_size=1, max_size=64) | st.sampled_from(["été", "١٢", "d-4２", "d-42"]))
def test_the_server_accepts_a_driver_id_exactly_when_the_documented_pattern_does(
    driver_id: str,
) -> None:
    """Generated clients obey the pattern: check_id took any Unicode letter or digit too."""
    try:
        accepted = check_id(driver_id, "driver_id") == driver_id
    except InvalidInput:
        accepted = False
    assert accepted == (re.fullmatch(DRIVER_ID_PATTERN, driver_id) is not None), driver_id


def test_driver_id_rules_are_documented_on_every_driver_path(doc: JsonDoc) -> None:
    for path, method, op in _operations(doc):
        for parameter in op.get("parameters", []):
            if parameter["name"] == "driver_id":
                assert parameter["schema"]["pattern"] == DRIVER_ID_PATTERN, f"{method} {path}"
    fleet_ping = doc["components"]["schemas"]["FleetPingIn"]["properties"]["driver_id"]
    assert fleet_ping["pattern"] == DRIVER_ID_PATTERN
