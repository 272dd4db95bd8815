"""The dashboard's OpenAPI document (GET /openapi.json on the dashboard), checked as the API's
is (tests/unit/test_openapi.py): valid for openapi-spec-validator (a GET + HEAD route gave two
operations one id), each operation declaring what it answers (it declared FastAPI's 422, which
never comes, and not the 401, 404 and 503 that do), and the three ways to present a token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from dashboard.app import create_app
from ridepulse.settings import Settings

JsonDoc = dict[str, Any]

DECLARED_STATUSES = {
    ("get", "/healthz"): {200},
    ("get", "/metrics"): {200},
    ("get", "/api/snapshot"): {200, 401, 404, 503},
    ("get", "/api/rides/{ride_id}"): {200, 401, 404, 503},
}
TOKEN_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer"},
    "dashboardLink": {"type": "apiKey", "in": "query", "name": "token"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "rp_dashboard"},
}


@pytest.fixture(scope="module")
def doc() -> JsonDoc:
    document: JsonDoc = create_app(Settings()).openapi()
    return document


def test_the_document_passes_openapi_spec_validator(doc: JsonDoc) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


async def test_the_served_document_is_the_one_checked_here(doc: JsonDoc) -> None:
    transport = httpx.ASGITransport(app=create_app(Settings()))  # no lifespan: no Redis needed
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        served = await client.get("/openapi.json")
    assert served.status_code == 200 and served.json() == doc


def test_each_operation_declares_the_statuses_it_can_answer_and_no_other(doc: JsonDoc) -> None:
    declared = {
        (method, path): {int(status) for status in op["responses"]}
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    assert declared == DECLARED_STATUSES
    assert "HTTPValidationError" not in doc["components"]["schemas"], "FastAPI's own 422 body"


def test_errors_declare_the_error_body_and_a_503_its_retry_after(doc: JsonDoc) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, f"{method} {path}"
                assert ("Retry-After" in response.get("headers", {})) == (status == "503")


def test_the_apis_accept_any_of_the_three_ways_to_present_a_token(doc: JsonDoc) -> None:
    schemes = doc["components"]["securitySchemes"]
    for name, expected in TOKEN_SCHEMES.items():
        assert expected.items() <= schemes[name].items(), (name, schemes[name])
    for path in ("/api/snapshot", "/api/rides/{ride_id}"):
        security = doc["paths"][path]["get"]["security"]
        # a list of one-scheme requirements: any one of them will do (OpenAPI's "or")
        assert sorted(name for requirement in security for name in requirement) == sorted(
            TOKEN_SCHEMES
        )
        assert all(len(requirement) == 1 for requirement in security), security
        parameters = doc["paths"][path]["get"].get("parameters", [])
        assert not [p for p in parameters if p["in"] in ("header", "cookie")], parameters
        assert "token" not in [p["name"] for p in parameters], "the token is a scheme"
