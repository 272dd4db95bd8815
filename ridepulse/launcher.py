"""`ridepulse up`: the embedded server (unless a URL is given), every service as its own
process under the supervisor, the simulated fleet, and the URLs to open."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import orjson
import redis

from ridepulse.auth import (
    DASHBOARD_LINK_TTL_S,
    mint_dashboard_link,
    private_dir,
    resolve_secret,
    write_private,
)
from ridepulse.cli_checks import cannot_listen
from ridepulse.cluster import LocalCluster, never
from ridepulse.keys import GlobalKeys
from ridepulse.logs import configure_logging, get_logger
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import EmbeddedRedis, reserve_ports
from ridepulse.scale import parse_scale
from ridepulse.services import SERVICE_NAMES
from ridepulse.settings import Settings
from ridepulse.supervisor import (
    TIER_LOAD,
    TIER_SERVER,
    ChildSpec,
    ReadyProbe,
    StartInterrupted,
    Supervisor,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _url_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "redis.url"


def remember_running_redis(settings: Settings, url: str) -> None:
    """Write down the server's URL for `status` and the other commands; it holds the
    operator's password, so the file is private from its first byte."""
    write_private(_url_file(settings), url)


def _port_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "redis" / "port"


def previous_port(settings: Settings) -> int:
    """The port the embedded server of `ridepulse up` or `ridepulse redis` served on last time,
    if nothing listens on it now and it is not one of the HTTP ports (0 if none): a service
    started with the old URL (`ridepulse run` reads <data dir>/redis.url) finds the server
    again after a restart of the command."""
    try:
        port = int(_port_file(settings).read_text())
    except (OSError, ValueError):
        return 0
    if port in (settings.api_port, settings.dashboard_port):
        return 0
    # bound as the server binds it (SO_REUSEADDR: its own connections in TIME_WAIT don't count)
    return port if cannot_listen("127.0.0.1", port) is None else 0


def embedded_server(settings: Settings) -> EmbeddedRedis:
    """The data dir's embedded server, prepared to start on its previous port if free."""
    return EmbeddedRedis(
        Path(settings.data_dir) / "redis",
        key_prefix=settings.key_prefix,
        port=previous_port(settings),
    ).prepare()


def server_started(settings: Settings, server: EmbeddedRedis) -> None:
    """The server answers: its port is kept for the next start (`previous_port`)."""
    write_private(_port_file(settings), str(server.port))
    get_logger().info("redis.started", port=server.port, data_dir=str(server.data_dir))


def run_server_only(settings: Settings, announce: Callable[[str], None]) -> int:
    """`ridepulse redis`: the embedded server supervised as `ridepulse up` runs it, restarted
    when it dies on the same port, password, ACL file and AOF, so a client holding the URL
    reconnects (it used to stay dead, the command waiting on, the data dir locked).
    `announce` gets the URL once the server answers; returns at SIGINT, SIGTERM or SIGHUP.
    A server that cannot start raises RuntimeError."""
    configure_logging("redis", settings.log_level)  # stderr: stdout carries only the URL
    server = embedded_server(settings)
    supervisor = Supervisor([server_spec(server)])
    stop = StopRequest(settings)  # before the server starts: a reader of the URL may stop us
    try:
        supervisor.start_all(should_stop=stop)
        server_started(settings, server)
        remember_running_redis(settings, server.url)
        announce(server.url)
        supervisor.watch(stop)
    except StartInterrupted:
        pass
    finally:
        supervisor.stop_all()
        forget_running_redis(settings)
    return 0


def forget_running_redis(settings: Settings) -> None:
    _url_file(settings).unlink(missing_ok=True)


def with_running_redis(settings: Settings) -> Settings:
    """Settings pointing at the embedded server `ridepulse up` wrote down, if none is given."""
    if settings.redis_url or not _url_file(settings).exists():
        return settings
    return settings.model_copy(update={"redis_url": _url_file(settings).read_text().strip()})


def _http_ready(url: str) -> ReadyProbe:
    def probe(pid: int) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return probe


def _heartbeat_ready(client: redis.Redis, key: str) -> ReadyProbe:
    """Ready once the heartbeat of *this* process is written: a killed predecessor's key
    lives on for its TTL, so the pid inside it must match."""

    def probe(pid: int) -> bool:
        raw = client.get(key)
        return raw is not None and orjson.loads(raw).get("pid") == pid

    return probe


def server_spec(server: EmbeddedRedis) -> ChildSpec:
    """The embedded server as a supervised child: first up, last down, restarted on the same
    port and data dir (its AOF replays) when it dies. Its stdout and stderr (a bad option) go
    to Valkey's own log, which a death is explained from (a bad AOF: the repair command)."""
    return ChildSpec(
        "valkey",
        server.command(),
        {},
        lambda pid: server.answers(),
        server.log_path,
        tier=TIER_SERVER,
        why_exited=server.exit_reason,
    )


# Services whose work is (almost all) telemetry: on a CPU too short for the offered load they
# yield to ingest, matching and pricing, which carry the rides. eta's ride group shares the
# process with its telemetry group; its ride events only refresh ETAs, never dispatch.
TELEMETRY_SERVICES = frozenset({"matching-geo", "eta"})


# One matching-geo process tops out near 95,000 pings/s on a 2-core machine while the machine
# still has CPU to spare (it waits on the server most of the time); two share the telemetry
# group and keep the index fresh past 120,000 (docs/benchmarks.md, the capacity sweep). An idle
# replica costs a blocked XREADGROUP and its memory. `--scale matching-geo=1` runs one.
DEFAULT_SCALE = {"matching-geo": 2}
LEASED = frozenset({"pricing", "eta"})


# Under `up` each consumer process serves /metrics on a port of its own (they all used to be
# given the same one, and all but the first failed to start): the first on
# RIDEPULSE_METRICS_PORT, each next one a port up, in launch order (docs/operations.md).
HTTP_SERVICES = frozenset({"ingest", "dashboard"})  # /metrics on their own HTTP port


def _children(settings: Settings) -> list[tuple[str, int, str]]:
    """(service, replica index, child name) of every service process, in launch order."""
    scale = {**DEFAULT_SCALE, **parse_scale(settings.scale)}
    return [
        (name, index, name if scale.get(name, 1) == 1 else f"{name}-{index}")
        for name in SERVICE_NAMES
        for index in range(1, scale.get(name, 1) + 1)
    ]


def metrics_ports(settings: Settings) -> dict[str, int]:
    """Child name → its /metrics port under `up`; none when RIDEPULSE_METRICS_PORT is 0."""
    if not settings.metrics_port:
        return {}
    consumers = [child for name, _, child in _children(settings) if name not in HTTP_SERVICES]
    return {child: settings.metrics_port + k for k, child in enumerate(consumers)}


def service_specs(
    settings: Settings,
    client: redis.Redis,
    secret: str,
    server: EmbeddedRedis | LocalCluster | None = None,
) -> list[ChildSpec]:
    """One child per service (``settings.scale``: N of some); on the embedded server or the
    local cluster each connects as its own ACL user (an external URL is used as given)."""
    logs = Path(settings.data_dir) / "logs"
    ridepulse_bin = shutil.which("ridepulse") or str(Path(sys.executable).parent / "ridepulse")
    ports = metrics_ports(settings)
    specs = []
    for name, index, child in _children(settings):
        consumer = f"{name}-{index}"
        env = {
            "RIDEPULSE_REDIS_URL": server.url_for(name) if server else settings.redis_url or "",
            "RIDEPULSE_SECRET": secret,
            "RIDEPULSE_DATA_DIR": str(Path(settings.data_dir).resolve()),
            "RIDEPULSE_HOST": settings.host,
            "RIDEPULSE_API_PORT": str(settings.api_port),
            "RIDEPULSE_DASHBOARD_PORT": str(settings.dashboard_port),
            "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
            "RIDEPULSE_CONSUMER_NAME": consumer,
            "RIDEPULSE_METRICS_PORT": str(ports.get(child, 0)),
        }
        if settings.markets:
            env["RIDEPULSE_MARKETS"] = settings.markets
        if name in LEASED and child != name:  # named with its index: one of several
            env["RIDEPULSE_LEASES"] = "1"  # one owner per market: the replicas split them
        if name == "ingest":
            ready = _http_ready(f"http://{settings.host}:{settings.api_port}/readyz")
        elif name == "dashboard":
            ready = _http_ready(f"http://{settings.host}:{settings.dashboard_port}/healthz")
        else:
            ready = _heartbeat_ready(
                client, GlobalKeys(settings.key_prefix).heartbeat(name, consumer)
            )
        specs.append(
            ChildSpec(
                child,
                [ridepulse_bin, "run", name],
                env,
                ready,
                logs / f"{child}.log",
                nice=settings.telemetry_nice if name in TELEMETRY_SERVICES else 0,
            )
        )
    return specs


def simulation_specs(settings: Settings, secret: str) -> list[ChildSpec]:
    """One locust child per running market (each simulates one city: RIDEPULSE_SIM_MARKET); the
    130 simulated users of the one-city demo are shared among the markets so two cities cost the
    2-core laptop no more than one."""
    locustfile = REPO_ROOT / "loadtests" / "locustfile.py"
    locust_bin = Path(sys.executable).parent / "locust"
    if not locustfile.exists() or not locust_bin.exists():
        return []
    market_ids = list(load_markets(settings.markets_file, settings.markets).by_id)
    users = max(40, 130 // len(market_ids))
    specs = []
    for market_id in market_ids:
        argv = [
            str(locust_bin),
            "-f",
            str(locustfile),
            "--headless",
            "--host",
            f"http://{settings.host}:{settings.api_port}",
            "-u",
            str(users),
            "-r",
            "20",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        # time runs 2x so a demo ride completes in a few minutes; seeded so every demo is alike
        env = {
            "RIDEPULSE_SECRET": secret,
            "RIDEPULSE_SIM_SEED": "7",
            "RIDEPULSE_SIM_TIME_SCALE": "2",
            "RIDEPULSE_SIM_MARKET": market_id,
        }
        name = "simulation" if len(market_ids) == 1 else f"simulation-{market_id}"
        log = Path(settings.data_dir) / "logs" / f"{name}.log"
        specs.append(ChildSpec(name, argv, env, None, log, tier=TIER_LOAD, stop_timeout_s=25.0))
    return specs


@dataclass(frozen=True)
class ClusterPlan:
    """`ridepulse up --cluster`: a local Valkey Cluster in <data dir>/cluster instead of one
    embedded server."""

    primaries: int = 3
    replicas: int = 1


def cluster_dir(settings: Settings) -> Path:
    """Where `up --cluster` and `cluster up` keep the nodes' data."""
    return Path(settings.data_dir) / "cluster"


def start_cluster(
    settings: Settings, plan: ClusterPlan, should_stop: Callable[[], bool] = never
) -> LocalCluster:
    """Start (or restart, same ports and data) the local cluster, every market's slot dealt;
    `should_stop` ends the start (StartInterrupted)."""
    markets = [m.id for m in load_markets(settings.markets_file, "all").markets]
    return LocalCluster(
        cluster_dir(settings),
        primaries=plan.primaries,
        replicas=plan.replicas,
        markets=markets,
        key_prefix=settings.key_prefix,
    ).start(should_stop=should_stop)


def run_platform(
    settings: Settings, *, simulate: bool, cluster_plan: ClusterPlan | None = None
) -> int:
    private_dir(Path(settings.data_dir))  # secret, passwords, logs: the owner's only
    configure_logging("supervisor", settings.log_level)
    log = get_logger()
    reserve_ports(settings.api_port, settings.dashboard_port, *metrics_ports(settings).values())
    server = None
    cluster = None
    specs: list[ChildSpec] = []
    stop = StopRequest(settings)  # before anything starts: a stop while forming ends it too
    if cluster_plan is not None:
        # The nodes are not the supervisor's children: a node that dies is replaced by its
        # replica's promotion (cluster failover) first, and restarted by the watch loop below
        # after twice the node timeout (docs/scaling.md).
        try:
            cluster = start_cluster(settings, cluster_plan, should_stop=stop)
        except StartInterrupted:  # LocalCluster.start stopped the nodes it had started
            log.info("platform.start_interrupted")
            stop.done()
            return 0
        settings = settings.model_copy(update={"redis_url": cluster.url})
        remember_running_redis(settings, cluster.url)
        log.info("cluster.started", url_port=cluster.nodes[0].port, nodes=len(cluster.nodes))
    elif not settings.redis_url:
        server = embedded_server(settings)
        specs.append(server_spec(server))
        settings = settings.model_copy(update={"redis_url": server.url})
    # timeouts on every call: a probe must never hang the watch loop on a stalled server
    client = connect_sync(settings.redis_url or "", socket_connect_timeout=3, socket_timeout=3)
    secret = resolve_secret(settings)
    services = service_specs(settings, client, secret, server or cluster)
    sims = simulation_specs(settings, secret) if simulate else []
    supervisor = Supervisor(specs + services + sims)
    try:
        supervisor.start_all(should_stop=stop)
        if server is not None:
            server_started(settings, server)
        if cluster is None:  # a given --redis-url too: `status` in another shell finds it
            remember_running_redis(settings, settings.redis_url or "")
        print_banner(settings, secret, [s.name for s in services], bool(sims), server, cluster)

        def should_stop() -> bool:
            if cluster is not None and not stop():
                cluster.revive_dead_nodes()  # never blocks nor raises: a node can stay down
            return stop()

        supervisor.watch(should_stop)
        return 0
    except StartInterrupted:
        log.info("platform.start_interrupted")  # what was started is stopped below, in order
        return 0
    except RuntimeError as exc:
        log.error("platform.start_failed", error=str(exc))
        return 1
    finally:
        supervisor.stop_all()
        client.close()
        if cluster is not None:
            cluster.stop()
        forget_running_redis(settings)  # the data dir is this command's (owning_data_dir)
        stop.done()


class StopRequest:
    """SIGTERM, SIGINT or SIGHUP asks the launcher to stop (it is asked with `stop()`); the
    first SIGHUP also moves its output off the terminal that went away."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requested = False
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and not self.requested:
            _detach_from_terminal(self.settings)
        self.requested = True

    def done(self) -> None:
        """Everything is stopped: another Ctrl-C has nothing left to stop. Ignored, so that it
        cannot turn the clean exit into 130 while Python shuts down (it resets a handler of
        its own to the default then, not an ignored signal)."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def __call__(self) -> bool:
        return self.requested


def _detach_from_terminal(settings: Settings) -> None:
    """The terminal is gone (SIGHUP): writing to it would fail mid-stop, so the launcher's own
    lines go to logs/supervisor.log from here on."""
    path = Path(settings.data_dir) / "logs" / "supervisor.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def operator_env(settings: Settings) -> str:
    """What another shell puts before `ridepulse status` or `token` to reach this platform: its
    data dir (redis.url, secret) unless the default, its key prefix unless the default."""
    fields = Settings.model_fields
    given: list[tuple[str, str]] = []
    data_dir = Path(settings.data_dir).resolve()
    if data_dir != Path(fields["data_dir"].default).resolve():
        given.append(("RIDEPULSE_DATA_DIR", str(data_dir)))
    if settings.key_prefix != fields["key_prefix"].default:
        given.append(("RIDEPULSE_KEY_PREFIX", settings.key_prefix))
    return "".join(f"{name}={shlex.quote(value)} " for name, value in given)


def print_banner(
    settings: Settings,
    secret: str,
    services: list[str],
    simulating: bool,
    server: EmbeddedRedis | None,
    cluster: LocalCluster | None = None,
) -> None:
    # A read-only link good for minutes (docs/security.md); opening it sets a session cookie.
    link = mint_dashboard_link(secret, "dashboard")
    base = f"http://[{settings.host}]" if ":" in settings.host else f"http://{settings.host}"
    lines = ["", "RidePulse is up."]
    if server is not None:
        lines.append(f"  Redis (embedded): 127.0.0.1:{server.port}  data: {server.data_dir}")
    if cluster is not None:
        ports = ",".join(str(node.port) for node in cluster.nodes)
        lines.append(
            f"  Redis Cluster (local): {cluster.primaries} primaries x {cluster.replicas} "
            f"replicas on 127.0.0.1:{ports}  data: {cluster.data_dir}"
        )
    lines.append(f"  services:  {', '.join(services)}")
    here = operator_env(settings)
    if "ingest" in services:
        lines.append(f"  API:       {base}:{settings.api_port}/docs")
    if "dashboard" in services:
        lines.append(f"  Dashboard: {base}:{settings.dashboard_port}/?token={link}")
        lines.append(
            f"             (read-only, valid {DASHBOARD_LINK_TTL_S // 60} min; "
            f"a new one: {here}ridepulse token --dashboard)"
        )
    lines.append(f"  simulation: {'running (locust, headless)' if simulating else 'off'}")
    lines.append(f"  logs:      {Path(settings.data_dir) / 'logs'}")
    lines.append(
        f"  status:    {here}ridepulse status    tokens: {here}ridepulse token <role> <id>"
    )
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
