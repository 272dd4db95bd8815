"""`python -m loadtests.bench.peers.serve <peer> --port N`: a peer under ingest's uvicorn settings
(ingest/service.py: uvloop, httptools, no access log, one worker)."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from loadtests.bench.peers import hello, naive_ingest

APPS = {"hello": hello.create_app, "naive": naive_ingest.create_app, "naive-jwt": naive_ingest.create_app_with_jwt}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app: FastAPI = APPS[args.peer]()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False,
        log_level="warning", timeout_graceful_shutdown=10,
    )  # fmt: skip


if __name__ == "__main__":
    main()
