"""wrk (Debian's package) as the load generator: closed loop, N keep-alive connections, one
thread, pre-built requests from post.lua. Installed with apt-get when missing and possible."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.affinity import LOAD_CORES, taskset

LUA = Path(__file__).with_name("post.lua")


@dataclass(frozen=True)
class Request:
    path: str
    token: str
    body: bytes


@dataclass(frozen=True)
class LoadResult:
    """One closed-loop run: completed requests and their latency (µs) as the client saw them."""

    requests: int
    errors: int  # non-2xx answers + socket errors + timeouts
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def ok_per_s(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def find_or_install_wrk(*, install: bool = True) -> str | None:
    found = shutil.which("wrk")
    if found or not install or shutil.which("apt-get") is None:
        return found
    print("  wrk not found: installing Debian's package (apt-get install -y wrk)", flush=True)

    def apt(*args: str) -> int:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        quiet = subprocess.DEVNULL
        return subprocess.run(["apt-get", *args], env=env, stdout=quiet, stderr=quiet).returncode

    if apt("install", "-y", "-qq", "wrk"):  # an outdated package list: update, then again
        apt("update", "-qq")
        apt("install", "-y", "-qq", "wrk")
    return shutil.which("wrk")


def write_requests(path: Path, requests: list[Request]) -> Path:
    with path.open("wb") as out:
        for req in requests:
            if b"\n" in req.body or b"\t" in req.body:
                raise ValueError("request bodies must be one line without tabs")
            out.write(f"{req.path}\t{req.token}\t".encode() + req.body + b"\n")
    return path


def run_wrk(
    binary: str,
    base_url: str,
    requests_file: Path,
    *,
    connections: int,
    seconds: float,
) -> LoadResult:
    # wrk takes whole seconds only ("0.5s" is a usage error)
    argv = [binary, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
    argv += ["--timeout", "10s", "-s", str(LUA), base_url, "--", str(requests_file)]
    argv = taskset(argv, LOAD_CORES)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk gave no result (exit {out.returncode}): {out.stdout[-800:]} {out.stderr[-800:]}"
        )
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    failed = ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    errors = sum(raw[name] for name in failed)
    duration_s = raw["duration_us"] / 1e6
    return LoadResult(
        raw["requests"], errors, duration_s, float(raw["p50_us"]), float(raw["p99_us"])
    )
