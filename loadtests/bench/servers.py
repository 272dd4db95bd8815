"""HTTP servers under test as subprocesses: ingest (`ridepulse run ingest`) and the peers, all on
one uvicorn worker with the same settings (uvloop, httptools, no access log); and the measuring
children: keyword options in (`module_argv` → `child_main`), one JSON line out."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvloop

from loadtests.bench.affinity import SERVER_CORES, pin, pin_profiled
from loadtests.platform import clean_env, tool
from ridepulse.redis_server import EmbeddedRedis, free_port

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0


@contextlib.contextmanager
def scratch_redis() -> Iterator[EmbeddedRedis]:
    """An embedded server in a temporary data dir, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp)).start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class ServerProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    profiled: bool = False

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, path: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until `path` answers (any HTTP status counts: the server is listening and routing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=1):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout_s:.0f}s: {self.tail()}")

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM; under py-spy the profiled child gets it, so py-spy sees it exit and writes."""
        if self.process.poll() is None:
            targets = psutil.Process(self.process.pid).children() if self.profiled else []
            for child in targets or [psutil.Process(self.process.pid)]:
                child.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    logs: Path,
    port: int,
    profile_to: Path | None = None,
) -> ServerProcess:
    argv = under_py_spy(argv, profile_to)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(**env))
    return ServerProcess(name, port, process, log, profiled=profile_to is not None)


def start_service(
    service: str,
    *,
    port_setting: str,
    ready_path: str,
    redis_url: str,
    secret: str,
    key_prefix: str,
    logs: Path,
    env: dict[str, str] | None = None,
    profile_to: Path | None = None,
) -> ServerProcess:
    """`ridepulse run SERVICE` on a free port (its `port_setting`), logging warnings only, its
    data and log in `logs`; returned once `ready_path` answers, stopped if it never does."""
    port = free_port()
    settings = {
        "RIDEPULSE_REDIS_URL": redis_url,
        "RIDEPULSE_SECRET": secret,
        port_setting: str(port),
        "RIDEPULSE_KEY_PREFIX": key_prefix,
        "RIDEPULSE_DATA_DIR": str(logs),
        "RIDEPULSE_LOG_LEVEL": "warning",
        **(env or {}),
    }
    argv = [tool("ridepulse"), "run", service]
    server = spawn(service, argv, settings, logs, port, profile_to)
    if profile_to is not None:
        pin_profiled(server.process.pid)
    try:
        server.wait_ready(ready_path)
    except BaseException:
        server.stop()
        raise
    return server


def start_ingest(
    *, redis_url: str, secret: str, key_prefix: str, logs: Path, profile_to: Path | None = None
) -> ServerProcess:
    """Ingest as the HTTP figures measure it: on the server's core unless profiled."""
    server = start_service(
        "ingest",
        port_setting="RIDEPULSE_API_PORT",
        ready_path="/readyz",
        redis_url=redis_url,
        secret=secret,
        key_prefix=key_prefix,
        logs=logs,
        # the batch figure re-sends 16 bodies of the same 16,000 drivers, ~30 pings/s each:
        # under the default 5/s most pings would be rejected, and the figure would count them.
        # The limiter still checks and charges every ping; it refuses none.
        env={"RIDEPULSE_PING_RATE_PER_S": "1000"},
        profile_to=profile_to,
    )
    if profile_to is None:
        pin(server.process.pid, SERVER_CORES)
    return server


def start_peer(
    peer: str, *, env: dict[str, str], logs: Path, gc_tuned: bool = False
) -> ServerProcess:
    """A peer app from loadtests.bench.peers under the same uvicorn settings as ingest."""
    port = free_port()
    argv = module_argv("loadtests.bench.peers.serve", peer=peer, port=port)
    if gc_tuned:
        argv.append("--gc-tuned")
    server = spawn(f"{peer}-gc-tuned" if gc_tuned else peer, argv, env, logs, port)
    server.wait_ready("/openapi.json")
    pin(server.process.pid, SERVER_CORES)
    return server


def under_py_spy(argv: list[str], profile_to: Path | None) -> list[str]:
    """`argv` run under py-spy's sampler writing raw stacks to `profile_to`, or as is."""
    if profile_to is None:
        return argv
    spy = [tool("py-spy"), "record", "--rate", "250", "--format", "raw"]
    return [*spy, "--output", str(profile_to), "--", *argv]


def module_argv(module: str, **options: object) -> list[str]:
    """`python -m module --an-option value …` for a measuring child process."""
    argv = [sys.executable, "-m", module]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def child_main(run: Callable[..., Coroutine[Any, Any, dict[str, float]]]) -> None:
    """A measuring child's `main`: `run`'s parameters as options (those without a default are
    required strings, the others take their default's type), its result as one JSON line."""
    parser = argparse.ArgumentParser()
    for name, param in inspect.signature(run).parameters.items():
        flag = f"--{name.replace('_', '-')}"
        if param.default is param.empty:
            parser.add_argument(flag, required=True)
        else:
            parser.add_argument(flag, type=type(param.default), default=param.default)
    result = uvloop.run(run(**vars(parser.parse_args())))
    print(json.dumps(result), flush=True)


def run_json_child(
    argv: list[str], timeout_s: float, profile_to: Path | None = None
) -> dict[str, float]:
    """Run a measuring child on the server's core (Valkey has the other) and return the JSON of
    its last `{…}` line."""
    argv = under_py_spy(argv, profile_to)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if profile_to is not None:
        pin_profiled(process.pid)
    else:
        pin(process.pid, SERVER_CORES)
    stdout, stderr = process.communicate(timeout=timeout_s)
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    if process.returncode or not lines:
        raise RuntimeError(f"{argv[2:4]} failed ({process.returncode}): {stderr[-1500:]}")
    result: dict[str, float] = json.loads(lines[-1])
    return result
