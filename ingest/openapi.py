"""The published OpenAPI document and the offline /docs page.

FastAPI builds the document from the routes; this adds what it cannot see: the request bodies
that hot-path routes parse themselves (ingest.schemas.body_schema) as `components/schemas`
and the bearer scheme on every /v1 operation; and it drops the 422s FastAPI adds on its own
(each route declares the errors it can answer: ridepulse.openapi_errors). /docs serves Swagger
UI from files vendored in ingest/static/swagger-ui, so it works on a machine without internet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from ingest.schemas import BODY_MODELS, SCHEMA_REF
from ridepulse.openapi_errors import drop_framework_validation_errors

SWAGGER_DIR = Path(__file__).parent / "static" / "swagger-ui"
SWAGGER_PREFIX = "/docs-assets"
BEARER = "bearerAuth"


def operation_id(route: APIRoute) -> str:
    """The endpoint's function name: short, stable ids for generated clients and links."""
    return route.name


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    drop_framework_validation_errors(doc)
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(model, "validation") for model in BODY_MODELS.values()], ref_template=SCHEMA_REF
    )
    for name, schema in defs.get("$defs", {}).items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different schemas named {name} in the OpenAPI document")
        schemas[name] = schema
    doc["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "`ridepulse token <role> <id>` mints one (roles: rider, driver, "
            "fleet, ops)",
        }
    }
    for path, operations in doc["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{BEARER: []}]
    app.openapi_schema = doc
    return doc


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its script and styles from this package, not a CDN."""
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} – docs",
            swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
        )

    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
