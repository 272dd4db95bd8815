"""The framework floor: a FastAPI hello-world POST endpoint at the same path as the ping route
(the load generator sends it the very same requests; it ignores the body and the token)."""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/drivers/{driver_id}/location", status_code=202)
    async def hello(driver_id: str) -> dict[str, str]:
        return {"hello": "world"}

    return app
