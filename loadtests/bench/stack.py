"""The whole platform for the end-to-end figure: `ridepulse up --no-sim` on free loopback ports,
with its own data dir (embedded server, secret, logs)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil

from loadtests.bench.servers import tool
from ridepulse.redis_server import free_port

READY_LINE = "RidePulse is up."


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.dashboard_port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.output = data_dir / "up.out"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_")}
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    tool("ridepulse"),
                    "up",
                    "--no-sim",
                    "--data-dir",
                    str(data_dir),
                    "--api-port",
                    str(self.api_port),
                    "--dashboard-port",
                    str(self.dashboard_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean,
            )

    def wait_up(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY_LINE in self.output.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"ridepulse up exited {self.process.returncode}: {self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"ridepulse up not ready in {timeout_s:.0f}s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        return self.output.read_text(errors="replace")[-chars:]

    @property
    def secret(self) -> str:
        return (self.data_dir / "secret").read_text().strip()

    @property
    def redis_url(self) -> str:
        return (self.data_dir / "redis.url").read_text().strip()

    def services(self) -> dict[str, psutil.Process]:
        """Service name → process (`ridepulse run <name>` children, and the Valkey server)."""
        found: dict[str, psutil.Process] = {}
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return found
        for proc in children:
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if "run" in cmd and cmd[-1] != "run":
                found[cmd[-1]] = proc
            elif cmd and "valkey" in Path(cmd[0]).name:
                found["valkey"] = proc
        return found

    def stop(self, timeout_s: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                proc.kill()
            self.process.kill()
            return self.process.wait()
