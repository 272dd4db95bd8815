"""The dashboard's OpenAPI document (/openapi.json), true and valid: operation ids named after
the endpoints and unique; HEAD left out (it is GET without the body, and FastAPI gives a route's
GET and HEAD one operation id, which openapi-spec-validator refuses); and no 422 of FastAPI's
own (no parameter here can fail validation; each route declares the errors it does answer,
ridepulse.openapi_errors)."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ridepulse.openapi_errors import drop_framework_validation_errors


def operation_id(route: APIRoute) -> str:
    """The endpoint's function name, as the API's ids are."""
    return route.name


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    with warnings.catch_warnings():
        # FastAPI warns of every GET + HEAD route (two operations, one id); HEAD goes below and
        # the ids left are checked below, so a real duplicate still fails
        warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
        doc = drop_framework_validation_errors(FastAPI.openapi(app))
    for item in doc["paths"].values():
        item.pop("head", None)
    ids = Counter(op["operationId"] for item in doc["paths"].values() for op in item.values())
    if repeated := [name for name, count in ids.items() if count > 1]:
        raise RuntimeError(f"operation ids used twice in the dashboard's document: {repeated}")
    return doc


def install_openapi(app: FastAPI) -> None:
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
