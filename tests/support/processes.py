"""The test suite's platform: the shared launcher (loadtests/platform.py), plus the cluster mode
of `make test-cluster` and an operator's Redis client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import psutil
import redis

from loadtests.platform import Platform as SharedPlatform
from loadtests.platform import tool
from ridepulse.redis_client import connect_sync

# `RIDEPULSE_TEST_CLUSTER=1` runs every platform of the suite on its own 3-primary Valkey
# Cluster (`make test-cluster`) instead of the embedded single server.
ON_CLUSTER = os.environ.get("RIDEPULSE_TEST_CLUSTER") == "1"

RIDEPULSE = tool("ridepulse")


class Platform(SharedPlatform):
    """`ridepulse up` on free loopback ports with its own data dir; output goes to a file."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        # RIDEPULSE_TEST_CLUSTER=1: the platform on its own local 3-primary cluster, each
        # service as its own ACL user there, as `ridepulse up --cluster` runs it for a user
        self.on_cluster = "--cluster" in extra
        if ON_CLUSTER and "--redis-url" not in extra and not self.on_cluster:
            extra = (*extra, "--cluster", "--primaries", "3", "--replicas", "0")
            self.on_cluster = True
        super().__init__(data_dir, *extra, env=env)

    def redis_port(self) -> int:
        return int(self.redis_url().rsplit(":", 1)[1].split("/")[0])

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The launcher's JSON log lines (its output is a file, so JSON) of one event, in order."""
        found = []
        for line in self.text().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                record = orjson.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    @contextmanager
    def paused(self, *services: str) -> Iterator[None]:
        """Every process of the services stopped (SIGSTOP, every replica), continued on the way
        out."""
        procs = [proc for service in services for proc in self.service_processes(service)]
        assert procs, f"no process of {', '.join(services)} under ridepulse up"
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGCONT)

    def redis_client(self) -> redis.Redis:
        """The operator's client of this platform's server or cluster."""
        return connect_sync(self.redis_url())

    def acl_denials(self) -> list[str]:
        """What the server's ACL LOG holds (every node's, on a cluster): each NOPERM a service
        user met (a command or key missing from its grant in ridepulse/acl_grants.py), or a
        failed AUTH."""
        if not (self.data_dir / "redis.url").exists():
            return []
        entries: list[dict[str, Any]] = []
        for client in self._node_clients():
            try:
                entries += client.acl_log(count=200)
            finally:
                client.close()
        return [
            f"{e.get('username')}: {e.get('reason')} {e.get('context')} {e.get('object')}"
            f" (x{e.get('count')})"
            for e in entries
        ]

    def _node_clients(self) -> list[redis.Redis]:
        """The operator's plain client of each server: one, or every node of the cluster."""
        url = self.redis_url()
        if not url.startswith("redis+cluster://"):
            return [connect_sync(url)]
        password = unquote(urlsplit(url).password or "")
        cluster: Any = connect_sync(url)
        try:
            nodes = [(node.host, node.port) for node in cluster.get_nodes()]
        finally:
            cluster.close()
        return [redis.Redis(host=host, port=port, password=password) for host, port in nodes]


def stop_children(stop: Any, children: Sequence[BaseProcess], timeout_s: float = 60) -> None:
    """Set the children's shared stop event, wait for each, kill what outlives `timeout_s`."""
    stop.set()
    for child in children:
        child.join(timeout=timeout_s)
        if child.is_alive():
            child.kill()


def process_gone(proc: psutil.Process) -> bool:
    """Exited (a zombie not yet reaped counts: it runs nothing)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) this loopback port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_service(service: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`ridepulse run <service>` in the background, its output (JSON lines) in `log_path`."""
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [RIDEPULSE, "run", service],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
