"""What a command checks before it starts work: settings in range, known markets, a data dir it
can write and no other ridepulse runs on, free ports, a Redis that answers. A problem ends the
command with one line per cause on stderr (exit 1), naming the flag or environment variable to
fix; never a traceback, nor a service started only to fail.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import redis
import typer
from pydantic import ValidationError
from redis.exceptions import ClusterError, RedisClusterException

from ridepulse.auth import private_dir, resolve_secret
from ridepulse.data_dir_lock import DataDirInUse, holding
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect_sync
from ridepulse.settings import Settings

# a Redis URL may carry a password; the secret is one
NOT_ECHOED = frozenset({"redis_url", "secret"})


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(1)


def invalid_settings(error: ValidationError, flags: set[str]) -> str:
    """One line per bad value: the flag when the command line gave it, else its variable."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        source = f"--{field.replace('_', '-')}" if field in flags else f"RIDEPULSE_{field.upper()}"
        reason = item["msg"].removeprefix("Value error, ")
        given = "(not shown)" if field in NOT_ECHOED else repr(item["input"])
        lines.append(f"{source}={given}: {reason}")
    return "invalid settings:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]


def load_settings(**overrides: Any) -> Settings:
    """The environment's settings with the command line's `overrides` (None: not given), whose
    markets file and market names resolve."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        fail(invalid_settings(exc, set(given)))
    try:
        load_markets(settings.markets_file, settings.markets)
    except (OSError, ValueError) as exc:  # a missing or malformed file, an unknown market
        fail(f"markets: {exc}")
    return settings


def require_data_dir(path: Path) -> None:
    """The directory exists (created owner-only if not) and this user can write in it."""
    try:
        private_dir(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        fail(f"cannot use the data dir {path}: {exc.strerror or exc} (--data-dir)")


def cannot_write(data_dir: Path, exc: OSError) -> str:
    """The one line for a file of the data dir that could not be written (a full disk)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"cannot write in the data dir {data_dir}{where}: {exc.strerror or exc} (--data-dir)"


# the services that sign or check tokens with the secret
SECRET_USERS = frozenset({"ingest", "dashboard"})


def require_secret(settings: Settings) -> str:
    """The signing secret (RIDEPULSE_SECRET, checked with the settings, else the data dir's,
    made once): one that is too short, or a file that cannot be read or written, ends the
    command with one line before anything starts."""
    try:
        return resolve_secret(settings)
    except ValueError as exc:  # auth.UnusableSecret: an empty or short file
        fail(str(exc))
    except OSError as exc:
        fail(cannot_write(settings.data_dir, exc))


@contextlib.contextmanager
def owning_data_dir(path: Path) -> Iterator[None]:
    """The directory, usable and this command's alone while it runs (data_dir_lock.py)."""
    require_data_dir(path)
    try:
        with holding(path):
            yield
    except DataDirInUse as exc:
        fail(f"{exc}: stop that one first, or give this one another --data-dir")


def cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now, or None (it can)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except socket.gaierror as exc:
        return f"unknown address {host!r} ({exc.strerror})"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "the port is in use by another program"
        return exc.strerror or str(exc)
    return None


def require_free_ports(settings: Settings, metrics: Mapping[str, int] | None = None) -> None:
    """`ridepulse up`'s two HTTP ports, and the consumers' /metrics ports (`metrics`: child
    name → port, launcher.metrics_ports), distinct and free, before any process starts."""
    wanted = {"--api-port": settings.api_port, "--dashboard-port": settings.dashboard_port}
    if settings.api_port == settings.dashboard_port:
        fail(f"--api-port and --dashboard-port are both {settings.api_port}: give them two ports")
    for flag, port in wanted.items():
        if problem := cannot_listen(settings.host, port):
            fail(f"cannot listen on {settings.host}:{port} ({flag}, --host): {problem}")
    metrics = metrics or {}
    if metrics and max(metrics.values()) > 65535:
        fail(
            f"RIDEPULSE_METRICS_PORT={settings.metrics_port}: the {len(metrics)} consumer "
            "processes serve /metrics on that port and the next ones, past 65535"
        )
    for child, port in metrics.items():
        taken = [flag for flag, other in wanted.items() if other == port]
        problem = f"it is {taken[0]} too" if taken else cannot_listen(settings.host, port)
        if problem:
            fail(
                f"cannot serve /metrics of {child} on {settings.host}:{port} "
                f"(RIDEPULSE_METRICS_PORT={settings.metrics_port} and up): {problem}"
            )


def redact_url(url: str | None) -> str:
    """The URL without its password, fit for an error line."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


# What a server that does not answer raises: a cluster client fails in its constructor, with
# an exception outside redis-py's RedisError.
UNREACHABLE = (redis.RedisError, RedisClusterException)


def redis_failed(url: str | None, exc: BaseException) -> str:
    """The one line for a Redis error that ends a command: a server that answered with an
    error reply (MISCONF on a full disk, NOREPLICAS, WRONGTYPE) refused the command, it was
    reachable; a cluster client that gave up following redirects (redis-py's "TTL exhausted.")
    reached nodes that kept sending it elsewhere, as while a slot moves between primaries;
    anything else (refused connection, timeout, bad password) could not reach it."""
    if isinstance(exc, redis.ResponseError):
        return f"Redis at {redact_url(url)} refused the command: {exc}"
    if isinstance(exc, ClusterError):
        return (
            f"the Redis cluster at {redact_url(url)} kept redirecting the command (TRYAGAIN, ASK "
            f"or MOVED past the client's redirect limit: a slot moving between nodes): {exc}"
        )
    return f"cannot reach Redis at {redact_url(url)}: {exc}"


def require_reachable(url: str) -> None:
    """A server `ridepulse up --redis-url` was given answers, with these credentials, before
    seven services are started against it to fail one by one."""
    try:
        client = connect_sync(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except UNREACHABLE as exc:
        fail(f"cannot reach Redis at {redact_url(url)}: {exc} (--redis-url)")
