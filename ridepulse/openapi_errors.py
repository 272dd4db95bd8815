"""The error shape as the two HTTP services' OpenAPI documents declare it: the body model, the
`responses=` entries of a route (each route lists the statuses it can answer, no more), and the
removal of the 422 FastAPI adds on its own. That 422 describes FastAPI's validation body, which
no client ever gets (ridepulse.http_errors answers the error shape), on routes whose parameters
cannot fail validation at all (a plain string in the path)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}
DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request",
    401: "Missing, invalid or expired bearer token (`WWW-Authenticate: Bearer`)",
    403: "The token's role or subject may not do this",
    404: "No such resource (or not yours)",
    409: "The resource is not in a state that allows this",
    413: "Body too large",
    415: "Body in a Content-Encoding other than identity (`Accept-Encoding: identity`)",
    422: "Invalid input; `field` names it",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "Storage unavailable or the write could not be made durable; retry",
}
FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ErrorOut(BaseModel):
    """Every 4xx and 5xx body (ridepulse.http_errors); some errors add context fields."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="machine-readable code, e.g. invalid_input, not_found")
    detail: str
    field: str | None = Field(None, description="the input at fault, dotted (pickup.lat)")


def error_responses(
    *statuses: int,
    retry_after: Iterable[int] = (429, 503),
    descriptions: dict[int, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries with the error body for exactly these statuses, and Retry-After on
    those in `retry_after` (the server sends it on every 429 and 503)."""
    said = {**DESCRIPTIONS, **(descriptions or {})}
    waits = set(retry_after)
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorOut, "description": said[status]}
        if status in waits:
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


def drop_framework_validation_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` without FastAPI's own 422s (a route that can answer 422 declares it with
    `error_responses`) and, once unused, without their schemas."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            declared = operation.get("responses", {}).get("422", {})
            schema = declared.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    schemas = doc.get("components", {}).get("schemas", {})
    for name in FRAMEWORK_SCHEMAS:
        schemas.pop(name, None)
    return doc
