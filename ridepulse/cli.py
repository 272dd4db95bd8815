"""The `ridepulse` command. Thin: parses, then calls the modules that do the work."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import orjson
import redis
import typer

from ridepulse import aof, launcher
from ridepulse import deadletters as dead_letters
from ridepulse.auth import (
    API_ROLES,
    DASHBOARD_LINK_TTL_S,
    DEFAULT_TTL_S,
    mint_dashboard_link,
    mint_token,
)
from ridepulse.cli_checks import (
    SECRET_USERS,
    UNREACHABLE,
    cannot_write,
    fail,
    load_settings,
    owning_data_dir,
    redis_failed,
    require_free_ports,
    require_reachable,
    require_secret,
)
from ridepulse.cli_cluster import cluster_app
from ridepulse.errors import CannotStart, RedisUnavailable, RidePulseError
from ridepulse.logs import LogFormat
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import server_binary
from ridepulse.services import ENTRY_POINTS, SERVICE_NAMES
from ridepulse.settings import Settings
from ridepulse.status import collect_status, render

app = typer.Typer(
    help="RidePulse: real-time ride-hailing telemetry on Redis Streams.", no_args_is_help=True
)


# One flag for the RIDEPULSE_LOG_FORMAT setting: `json` keeps machine lines on a terminal too.
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(help="auto: readable on a terminal, JSON elsewhere (RIDEPULSE_LOG_FORMAT)"),
]


@app.command()
def up(
    # None: the setting's own value (RIDEPULSE_HOST, _API_PORT, _DASHBOARD_PORT, else default)
    host: Annotated[
        str | None,
        typer.Option(help="bind address of the HTTP services", show_default="127.0.0.1"),
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="ingest API port", show_default="8000")
    ] = None,
    dashboard_port: Annotated[
        int | None, typer.Option(help="dashboard port", show_default="8080")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="embedded server data, logs, secret")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="use this Redis instead of the embedded one")
    ] = None,
    no_sim: Annotated[
        bool, typer.Option("--no-sim", help="do not start the simulated fleet")
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster", help="run on a local Valkey Cluster (<data dir>/cluster), not one server"
        ),
    ] = False,
    primaries: Annotated[
        int | None, typer.Option(min=1, help="with --cluster: shards", show_default="3")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(min=0, help="with --cluster: replicas per primary", show_default="1"),
    ] = None,
    markets: Annotated[
        str | None,
        typer.Option(help="markets to run: unset = the first (sf), 'all', or e.g. 'sf,nyc'"),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(help="replicas per service, e.g. 'pricing=2,matching=2' (docs/scaling.md)"),
    ] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Start Redis (embedded unless --redis-url; a local cluster with --cluster), every service
    and the simulated fleet."""
    if cluster and redis_url:
        fail("--cluster starts its own cluster: leave out --redis-url (or --cluster)")
    if not cluster and (primaries is not None or replicas is not None):
        fail("--primaries and --replicas shape the cluster of --cluster: add --cluster")
    settings = load_settings(
        markets=markets,
        host=host,
        api_port=api_port,
        dashboard_port=dashboard_port,
        data_dir=data_dir,
        redis_url=redis_url,
        log_format=log_format,
        scale=scale,
    )
    with contextlib.ExitStack() as owned:
        owned.enter_context(owning_data_dir(settings.data_dir))
        if cluster:  # `ridepulse cluster up` keeps its nodes there too
            owned.enter_context(owning_data_dir(launcher.cluster_dir(settings)))
        require_free_ports(settings, launcher.metrics_ports(settings))
        if settings.redis_url:
            require_reachable(settings.redis_url)
        require_secret(settings)
        try:
            plan = (
                launcher.ClusterPlan(
                    3 if primaries is None else primaries, 1 if replicas is None else replicas
                )
                if cluster
                else None
            )
            code = launcher.run_platform(settings, simulate=not no_sim, cluster_plan=plan)
        except RedisUnavailable as exc:
            fail(exc.detail)
        except OSError as exc:  # a data dir file (URL, port, passwords) on a full disk
            fail(cannot_write(settings.data_dir, exc))
    raise typer.Exit(code)


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"one of: {', '.join(SERVICE_NAMES)}")],
    log_format: LogFormatOption = None,
) -> None:
    """Run one service in the foreground (what each docker-compose container runs)."""
    if service not in ENTRY_POINTS:
        fail(f"unknown service {service!r}; choose one of: {', '.join(SERVICE_NAMES)}")
    settings = launcher.with_running_redis(load_settings(log_format=log_format))
    if not settings.redis_url:
        fail(
            "no Redis: set RIDEPULSE_REDIS_URL, "
            "or start one with `ridepulse redis` / `ridepulse up`"
        )
    module_name, _, func = ENTRY_POINTS[service].partition(":")
    if importlib.util.find_spec(module_name) is None:
        fail(f"service {service!r} is not built in this version")
    if service in SECRET_USERS:
        require_secret(settings)
    main = getattr(importlib.import_module(module_name), func)
    try:
        main(settings)
    except UNREACHABLE as exc:
        fail(redis_failed(settings.redis_url, exc))
    except CannotStart as exc:  # a port to serve on is taken
        fail(exc.detail)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Streams, groups, lag, heartbeats and dead letters of every market the server holds;
    exit 1 when something is unhealthy."""
    settings = load_settings()
    with _operator_redis(settings) as client:
        configured = [m.id for m in load_markets(settings.markets_file, settings.markets).markets]
        report = collect_status(client, configured, settings.key_prefix, settings.durable_writes)
    typer.echo(
        orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode()
        if as_json
        else render(report)
    )
    raise typer.Exit(0 if report.healthy else 1)


deadletters_app = typer.Typer(
    help="Dead letters: list them (no subcommand), replay one or all to their stream.",
    invoke_without_command=True,
)
app.add_typer(deadletters_app, name="deadletters")


@contextlib.contextmanager
def _operator_redis(settings: Settings) -> Iterator[redis.Redis]:
    """The operator's client of the platform's server (given, or the one `ridepulse up` wrote
    down); a server that does not answer, there or on the way, ends the command with one line."""
    url = launcher.with_running_redis(settings).redis_url
    if not url:
        fail(
            f"no Redis to inspect: nothing running with the data dir "
            f"{Path(settings.data_dir).resolve()} (no redis.url there): set RIDEPULSE_DATA_DIR "
            "to the platform's, or RIDEPULSE_REDIS_URL, or run `ridepulse up` first"
        )
    try:
        client = connect_sync(url or "", socket_connect_timeout=3)
        try:
            yield client
        finally:
            client.close()
    except UNREACHABLE as exc:
        fail(redis_failed(url, exc))


@deadletters_app.callback()
def deadletters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many, oldest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="every field, original included")] = False,
) -> None:
    """List dead letters: id, deliveries, stream / group, event, reason."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    with _operator_redis(settings) as client:
        letters = dead_letters.list_dead_letters(client, settings.key_prefix, limit)
    if as_json:
        typer.echo(orjson.dumps([d.to_dict() for d in letters], option=orjson.OPT_INDENT_2))
    else:
        typer.echo(dead_letters.render(letters))


@deadletters_app.command("replay")
def deadletters_replay(
    dead_letter_id: Annotated[
        str | None, typer.Argument(help="the dead letter's id (first column of the listing)")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="replay even an entry the contracts still cannot decode"),
    ] = False,
) -> None:
    """Append the original event to its stream again (once, whichever groups gave up on it),
    then delete its dead letters."""
    if (dead_letter_id is None) == (not replay_all):
        fail("give one dead letter id or --all")
    settings = load_settings()
    prefix = settings.key_prefix
    done: list[dead_letters.Replayed] = []
    refused: list[tuple[dead_letters.DeadLetter, str]] = []
    with _operator_redis(settings) as client:
        try:
            if replay_all:
                done, refused = dead_letters.replay_all(client, prefix, force=force)
            else:
                one = dead_letters.get_dead_letter(client, prefix, dead_letter_id or "")
                done = [dead_letters.replay(client, prefix, one, force=force)]
        except RidePulseError as exc:
            fail(exc.detail)
    for replayed in done:
        letter = replayed.letter
        also = f"; deleted with it: {', '.join(replayed.siblings)}" if replayed.siblings else ""
        typer.echo(
            f"replayed {letter.id} -> {letter.stream} {replayed.new_id} "
            f"({letter.type} {letter.event_id}){also}"
        )
    for letter, why in refused:
        typer.secho(f"kept {letter.id}: {why}", fg="yellow", err=True)
    typer.echo(f"{len(done)} replayed" + (f", {len(refused)} kept" if refused else ""))
    raise typer.Exit(1 if refused else 0)


@app.command(name="redis")
def redis_only(
    data_dir: Annotated[Path | None, typer.Option(help="where the AOF and password live")] = None,
) -> None:
    """Start only the embedded server and print its URL; restarted on the same port if it
    dies; Ctrl-C stops it."""
    settings = load_settings(data_dir=data_dir)
    with owning_data_dir(settings.data_dir):
        try:
            launcher.run_server_only(settings, lambda url: typer.echo(url, color=False))
        except RedisUnavailable as exc:
            fail(exc.detail)
        except RuntimeError as exc:  # the server exited during start, or never answered
            fail(str(exc))
        except OSError as exc:  # its port, URL or password file on a full disk
            fail(cannot_write(settings.data_dir, exc))


@app.command(name="repair-aof")
def repair_aof(
    data_dir: Annotated[
        Path | None, typer.Option(help="the platform's data dir: repairs <data dir>/redis")
    ] = None,
    server_dir: Annotated[
        Path | None,
        typer.Option(help="another server's directory instead, e.g. a cluster's node-N"),
    ] = None,
) -> None:
    """Repair an AOF Valkey refused at start ('Bad file format'): back up the AOF directory,
    then cut its last file at the first bad command; the server must be stopped."""
    settings = load_settings(data_dir=data_dir)
    where = server_dir or Path(settings.data_dir) / "redis"
    with owning_data_dir(where.parent):  # the lock `up`, `redis` and `cluster up` hold
        try:
            done = aof.repair(where, server_binary())
        except RidePulseError as exc:
            fail(exc.detail)
    typer.echo(done.summary())


@app.command()
def token(
    role: Annotated[
        str | None, typer.Argument(help=f"API role, one of: {', '.join(API_ROLES)}")
    ] = None,
    subject: Annotated[
        str | None, typer.Argument(help="driver id, rider id, or a name for fleet/ops/viewer")
    ] = None,
    ttl_s: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="lifetime in seconds \\[default: 12 h; 10 min with --dashboard] "
            "(at most 30 days; 1 day with --dashboard)",
        ),
    ] = None,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard", help="a short-lived read-only dashboard link token instead of an API one"
        ),
    ] = False,
) -> None:
    """Print a signed bearer token: `api` audience by default, `dashboard` with --dashboard."""
    settings = load_settings()
    if not settings.secret and not (Path(settings.data_dir) / "secret").exists():
        # a new secret here signs tokens no running platform accepts: say where we looked
        fail(
            f"no secret in the data dir {Path(settings.data_dir).resolve()}: set "
            "RIDEPULSE_DATA_DIR to the platform's (or RIDEPULSE_SECRET), or run `ridepulse up` "
            "first"
        )
    secret = require_secret(settings)
    if dashboard:
        if role not in (None, "viewer"):
            fail(
                "a dashboard token has the role 'viewer' only: "
                "ridepulse token --dashboard [viewer NAME]"
            )
        ttl = DASHBOARD_LINK_TTL_S if ttl_s is None else _capped(ttl_s, MAX_LINK_TTL_S, "a link")
        typer.echo(mint_dashboard_link(secret, subject or "dashboard", ttl_s=ttl))
        return
    if role not in API_ROLES or not subject:
        fail(f"usage: ridepulse token ROLE SUBJECT, ROLE one of: {', '.join(API_ROLES)}")
    ttl = DEFAULT_TTL_S if ttl_s is None else _capped(ttl_s, MAX_TOKEN_TTL_S, "an API token")
    typer.echo(mint_token(secret, role or "", subject or "", ttl_s=ttl))


# A link is meant to be opened within minutes (its session lives on); a token that outlives the
# secret's rotation by years is one nobody can revoke short of rotating it (docs/security.md).
MAX_LINK_TTL_S = 24 * 3600
MAX_TOKEN_TTL_S = 30 * 24 * 3600


def _capped(ttl_s: int, most_s: int, what: str) -> int:
    if ttl_s > most_s:
        fail(f"--ttl-s {ttl_s}: {what} lives at most {most_s} s ({most_s // 3600} h)")
    return ttl_s


def _add_events_app() -> None:
    if importlib.util.find_spec("ridepulse.cli_events") is not None:
        from ridepulse.cli_events import events_app

        app.add_typer(events_app, name="events", help="Event contracts: AsyncAPI and JSON Schema.")


_add_events_app()
app.add_typer(cluster_app, name="cluster", help="A local Valkey Cluster to grow into.")


def main() -> None:
    if shutil.which("ridepulse") is None and len(sys.argv) > 0:
        sys.argv[0] = "ridepulse"
    app()
