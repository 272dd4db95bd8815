"""Run the real `ridepulse` command as a subprocess and inspect its process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from ridepulse.cluster import LocalCluster
from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import free_port

# `RIDEPULSE_TEST_CLUSTER=1` runs every platform of the suite on its own 3-primary Valkey
# Cluster (`make test-cluster`) instead of the embedded single server.
ON_CLUSTER = os.environ.get("RIDEPULSE_TEST_CLUSTER") == "1"

RIDEPULSE = str(Path(sys.executable).parent / "ridepulse")


class Platform:
    """`ridepulse up` on free loopback ports with its own data dir; output goes to a file."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.dashboard_port = free_port()
        self.output = data_dir / "up.out"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._out = self.output.open("wb")
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_")}
        self.cluster: LocalCluster | None = None
        if ON_CLUSTER and "--redis-url" not in extra:
            self.cluster = LocalCluster(data_dir / "cluster", primaries=3).start()
            extra = (*extra, "--redis-url", self.cluster.url)
        self.process = subprocess.Popen(
            [
                RIDEPULSE,
                "up",
                "--data-dir",
                str(data_dir),
                "--api-port",
                str(self.api_port),
                "--dashboard-port",
                str(self.dashboard_port),
                *extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**clean_env, **(env or {})},
        )

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_up(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "RidePulse is up." in self.text():
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ridepulse up exited {self.process.returncode}:\n{self.text()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"ridepulse up not ready in {timeout_s}s:\n{self.text()[-3000:]}")

    def descendants(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process(self.process.pid).children(
                recursive=True
            )
            return children
        except psutil.NoSuchProcess:
            return []

    def service_process(self, name: str) -> psutil.Process | None:
        for proc in self.descendants():
            try:
                cmd = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "run" in cmd and cmd[-1] == name:
                return proc
        return None

    def redis_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        return (self.data_dir / "redis.url").read_text().strip()

    def redis_client(self) -> redis.Redis:
        """The operator's client of this platform's server or cluster."""
        return connect_sync(self.redis_url())

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for proc in self.descendants():
                proc.kill()
            self.process.kill()
            raise
        finally:
            self._out.close()
            if self.cluster is not None:
                self.cluster.stop()
        return code
