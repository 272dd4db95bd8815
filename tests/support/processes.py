"""The test suite's platform: the shared launcher (loadtests/platform.py), plus the cluster mode
of `make test-cluster` and an operator's Redis client."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import redis

from loadtests.platform import Platform as SharedPlatform
from loadtests.platform import tool
from ridepulse.cluster import LocalCluster
from ridepulse.redis_client import connect_sync

# `RIDEPULSE_TEST_CLUSTER=1` runs every platform of the suite on its own 3-primary Valkey
# Cluster (`make test-cluster`) instead of the embedded single server.
ON_CLUSTER = os.environ.get("RIDEPULSE_TEST_CLUSTER") == "1"

RIDEPULSE = tool("ridepulse")


class Platform(SharedPlatform):
    """`ridepulse up` on free loopback ports with its own data dir; output goes to a file."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.cluster: LocalCluster | None = None
        if ON_CLUSTER and "--redis-url" not in extra and "--cluster" not in extra:
            self.cluster = LocalCluster(data_dir / "cluster", primaries=3).start()
            extra = (*extra, "--redis-url", self.cluster.url)
        super().__init__(data_dir, *extra, env=env)

    def redis_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        return super().redis_url()

    def redis_client(self) -> redis.Redis:
        """The operator's client of this platform's server or cluster."""
        return connect_sync(self.redis_url())

    def acl_denials(self) -> list[str]:
        """What the server's ACL LOG holds: each NOPERM a service user met (a command or key
        missing from its grant in ridepulse/acl_grants.py), or a failed AUTH. Empty on a cluster,
        where the services connect as the operator."""
        if self.cluster is not None or not (self.data_dir / "redis.url").exists():
            return []
        client = self.redis_client()
        try:
            entries: list[dict[str, Any]] = client.acl_log(count=200)
        finally:
            client.close()
        return [
            f"{e.get('username')}: {e.get('reason')} {e.get('context')} {e.get('object')}"
            f" (x{e.get('count')})"
            for e in entries
        ]

    def stop(self, timeout_s: float = 60.0, sig: signal.Signals = signal.SIGTERM) -> int:
        try:
            return super().stop(timeout_s, sig)
        finally:
            if self.cluster is not None:
                self.cluster.stop()
