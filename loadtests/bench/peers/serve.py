"""`python -m loadtests.bench.peers.serve --peer P --port N [--gc-tuned]`: a peer under ingest's
uvicorn settings (ingest/service.py: uvloop, httptools, no access log, one worker).

`--gc-tuned` starts it with ingest's garbage-collector settings (ridepulse/gc_tuning.py): the
peers run as a user would write them, with CPython's defaults, and the tuned hello world shows
what the framework floor is under the settings ingest itself runs with."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from loadtests.bench.peers import naive_ingest
from ridepulse.gc_tuning import tune_gc


def hello_app() -> FastAPI:
    """The framework floor: a hello world at the ping route's path (the load generator sends it
    the very same requests; it ignores the body and the token)."""
    app = FastAPI()

    @app.post("/v1/drivers/{driver_id}/location", status_code=202)
    async def hello(driver_id: str) -> dict[str, str]:
        return {"hello": "world"}

    return app


APPS = {
    "hello": hello_app,
    "naive": naive_ingest.create_app,
    "naive-jwt": naive_ingest.create_app_with_jwt,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", choices=sorted(APPS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc-tuned", action="store_true", help="ingest's GC settings")
    args = parser.parse_args()
    app = APPS[args.peer]()
    if args.gc_tuned:
        tune_gc()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
