"""JSON responses rendered with orjson (FastAPI's ORJSONResponse is deprecated).

A JSONResponse subclass, so FastAPI documents a route's `response_model` as its body schema
(for any other Response class it declares the body a plain string)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class JSON(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
