"""`ridepulse up`: the embedded server (unless a URL is given), every service as its own
process under the supervisor, the simulated fleet, and the URLs to open."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import sys
import urllib.request
from pathlib import Path
from types import FrameType

import redis

from ridepulse.auth import mint_token, resolve_secret
from ridepulse.keys import GlobalKeys
from ridepulse.logs import configure_logging, get_logger
from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.services import ENTRY_POINTS, SERVICE_NAMES
from ridepulse.settings import Settings
from ridepulse.supervisor import ChildSpec, ReadyProbe, Supervisor

HTTP_SERVICES = {"ingest", "dashboard"}
REPO_ROOT = Path(__file__).resolve().parent.parent


def _url_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "redis.url"


def start_embedded(settings: Settings) -> EmbeddedRedis:
    server = EmbeddedRedis(
        Path(settings.data_dir) / "redis", key_prefix=settings.key_prefix
    ).start()
    _url_file(settings).write_text(server.url)
    _url_file(settings).chmod(0o600)
    return server


def forget_running_redis(settings: Settings) -> None:
    _url_file(settings).unlink(missing_ok=True)


def with_running_redis(settings: Settings) -> Settings:
    """Settings pointing at the embedded server `ridepulse up` wrote down, if none is given."""
    if settings.redis_url or not _url_file(settings).exists():
        return settings
    return settings.model_copy(update={"redis_url": _url_file(settings).read_text().strip()})


def built_services() -> list[str]:
    return [n for n in SERVICE_NAMES if importlib.util.find_spec(ENTRY_POINTS[n].split(":")[0])]


def _http_ready(url: str) -> ReadyProbe:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return probe


def _heartbeat_ready(client: redis.Redis, key: str) -> ReadyProbe:
    return lambda: bool(client.exists(key))


def service_specs(
    settings: Settings, client: redis.Redis, secret: str, server: EmbeddedRedis | None = None
) -> list[ChildSpec]:
    """One child per built service; on the embedded server each connects as its own ACL user."""
    logs = Path(settings.data_dir) / "logs"
    ridepulse_bin = shutil.which("ridepulse") or str(Path(sys.executable).parent / "ridepulse")
    specs = []
    for name in built_services():
        consumer = f"{name}-1"
        env = {
            "RIDEPULSE_REDIS_URL": server.url_for(name) if server else settings.redis_url or "",
            "RIDEPULSE_SECRET": secret,
            "RIDEPULSE_DATA_DIR": str(Path(settings.data_dir).resolve()),
            "RIDEPULSE_HOST": settings.host,
            "RIDEPULSE_API_PORT": str(settings.api_port),
            "RIDEPULSE_DASHBOARD_PORT": str(settings.dashboard_port),
            "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
            "RIDEPULSE_CONSUMER_NAME": consumer,
        }
        if name == "ingest":
            ready = _http_ready(f"http://{settings.host}:{settings.api_port}/readyz")
        elif name == "dashboard":
            ready = _http_ready(f"http://{settings.host}:{settings.dashboard_port}/healthz")
        else:
            ready = _heartbeat_ready(
                client, GlobalKeys(settings.key_prefix).heartbeat(name, consumer)
            )
        specs.append(
            ChildSpec(name, [ridepulse_bin, "run", name], env, ready, logs / f"{name}.log")
        )
    return specs


def simulation_spec(settings: Settings, secret: str) -> ChildSpec | None:
    locustfile = REPO_ROOT / "loadtests" / "locustfile.py"
    locust_bin = Path(sys.executable).parent / "locust"
    if "ingest" not in built_services() or not locustfile.exists() or not locust_bin.exists():
        return None
    argv = [
        str(locust_bin),
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        f"http://{settings.host}:{settings.api_port}",
        "-u",
        "130",
        "-r",
        "20",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    # time runs 2x so a demo ride completes in a few minutes; seeded so every demo is alike
    env = {"RIDEPULSE_SECRET": secret, "RIDEPULSE_SIM_SEED": "7", "RIDEPULSE_SIM_TIME_SCALE": "2"}
    log = Path(settings.data_dir) / "logs" / "simulation.log"
    return ChildSpec("simulation", argv, env, None, log, drain_first=True)


def run_platform(settings: Settings, *, simulate: bool) -> int:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    configure_logging("supervisor", settings.log_level, settings.log_format)
    log = get_logger()
    server = None
    if not settings.redis_url:
        server = start_embedded(settings)
        settings = settings.model_copy(update={"redis_url": server.url})
        log.info("redis.started", port=server.port, data_dir=str(server.data_dir))
    client = connect_sync(settings.redis_url or "", socket_connect_timeout=3)
    secret = resolve_secret(settings)
    specs = service_specs(settings, client, secret, server)
    sim = simulation_spec(settings, secret) if simulate else None
    supervisor = Supervisor(specs + ([sim] if sim else []))
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        supervisor.start_all()
        print_banner(settings, secret, [s.name for s in specs], sim is not None, server)
        supervisor.watch(lambda: stopping)
        return 0
    except RuntimeError as exc:
        log.error("platform.start_failed", error=str(exc))
        return 1
    finally:
        supervisor.stop_all()
        client.close()
        if server is not None:
            server.stop()
            forget_running_redis(settings)


def print_banner(
    settings: Settings,
    secret: str,
    services: list[str],
    simulating: bool,
    server: EmbeddedRedis | None,
) -> None:
    ops = mint_token(secret, "ops", "dashboard")
    base = f"http://{settings.host}"
    lines = ["", "RidePulse is up."]
    if server is not None:
        lines.append(f"  Redis (embedded): 127.0.0.1:{server.port}  data: {server.data_dir}")
    lines.append(f"  services:  {', '.join(services) or '(none built yet)'}")
    if "ingest" in services:
        lines.append(f"  API:       {base}:{settings.api_port}/docs")
    if "dashboard" in services:
        lines.append(f"  Dashboard: {base}:{settings.dashboard_port}/?token={ops}")
    lines.append(f"  simulation: {'running (locust, headless)' if simulating else 'off'}")
    lines.append(f"  logs:      {Path(settings.data_dir) / 'logs'}")
    lines.append("  status:    ridepulse status    tokens: ridepulse token <role> <id>")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
