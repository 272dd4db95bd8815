"""A route class for the hottest endpoint: FastAPI documents it as usual (OpenAPI, examples),
but a request goes straight to the endpoint with the path parameters, skipping dependency
solving and parameter validation.

Only for endpoints whose signature is `(request: Request, <str path params>) -> Response` and
that validate their own input (they raise RidePulseError, which the app's handlers turn into
4xx). Measured on the single-ping route: FastAPI's per-request handler (`solve_dependencies`
and its wrapper) was about 15% of a worker's time; see docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request=request, **request.path_params)
            return response

        return handle
