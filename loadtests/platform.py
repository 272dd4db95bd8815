"""The one way tests, benches, CI and the chaos suite start the platform: `ridepulse up` as a
subprocess on free loopback ports, with its own data dir, output to a file, and a way to find
and signal the processes it supervises.

The product never imports this (tests and load tools do)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from ridepulse.redis_server import free_port

READY_LINE = "RidePulse is up."


def tool(name: str) -> str:
    """A console script of this venv, else one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` not found beside {sys.executable} or on PATH")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any RIDEPULSE_ setting (each platform owns its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_")}
    return {**env, **extra}


class Platform:
    """`ridepulse up` on free loopback ports with its own data dir; output goes to up.out."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.api_port = free_port()
        self.dashboard_port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.output = data_dir / "up.out"
        argv = [
            tool("ridepulse"),
            "up",
            "--host",
            host,
            "--data-dir",
            str(data_dir),
            "--api-port",
            str(self.api_port),
            "--dashboard-port",
            str(self.dashboard_port),
            *extra,
        ]
        with self.output.open("wb") as out:
            # its own session, like a shell's job: a test can send the whole group a terminal's
            # Ctrl-C or hangup without reaching the test runner
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(**(env or {})),
                start_new_session=True,
            )

    # ---- addresses and files ---------------------------------------------------------
    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dashboard(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def secret(self) -> str:
        return (self.data_dir / "secret").read_text().strip()

    def redis_url(self) -> str:
        return (self.data_dir / "redis.url").read_text().strip()

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]

    def print_logs(self, lines: int = 60) -> None:
        """The launcher's output and each service log's last lines (for a failed run)."""
        for path in [self.output, *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                last = path.read_text(errors="replace").splitlines()[-lines:]
                print(f"--- last lines of {path} ---", *last, "---", sep="\n", flush=True)

    # ---- waiting ---------------------------------------------------------------------
    def wait_up(self, timeout_s: float = 120.0) -> None:
        """Until the banner is printed (every service ready); fails if `up` exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY_LINE in self.text():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"ridepulse up exited {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"ridepulse up not ready in {timeout_s:.0f}s:\n{self.tail()}")

    # ---- the process tree ------------------------------------------------------------
    def descendants(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process(self.process.pid).children(
                recursive=True
            )
            return children
        except psutil.NoSuchProcess:
            return []

    def processes(self) -> dict[str, psutil.Process]:
        """Child name → process, as the supervisor names them: `<service>` for a service run
        once, `<service>-<n>` (its consumer name) for each replica of one run several times
        (matching-geo by default), and `valkey` for the server (`valkey-<n>` for each node of
        `--cluster`)."""
        found: dict[str, psutil.Process] = {}
        for service, procs in self.processes_by_service().items():
            if len(procs) == 1:
                found[service] = procs[0]
                continue
            if service == "valkey":
                found.update((f"valkey-{n}", proc) for n, proc in enumerate(procs))
                continue
            for proc in procs:
                try:
                    found[proc.environ().get("RIDEPULSE_CONSUMER_NAME") or str(proc.pid)] = proc
                except psutil.Error:
                    continue
        return found

    def processes_by_service(self) -> dict[str, list[psutil.Process]]:
        """Service → its processes (`ridepulse run <service>` children, or the servers)."""
        found: dict[str, list[psutil.Process]] = {}
        for proc in self.descendants():
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if len(cmd) >= 2 and cmd[-2] == "run":
                found.setdefault(cmd[-1], []).append(proc)
            elif cmd and "valkey" in Path(cmd[0]).name and not _is_valkey_fork(proc):
                found.setdefault("valkey", []).append(proc)
        return found

    def service_process(self, name: str) -> psutil.Process | None:
        """The process of a child by its name (see `processes`)."""
        return self.processes().get(name)

    def service_processes(self, service: str) -> list[psutil.Process]:
        """Every process of a service, however many replicas it runs."""
        return self.processes_by_service().get(service, [])

    # ---- stopping --------------------------------------------------------------------
    def stop(self, timeout_s: float = 60.0, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal `ridepulse up` and wait; on timeout kill its whole tree and raise."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for proc in self.descendants():
                proc.kill()
            self.process.kill()
            self.process.wait()
            raise


def _is_valkey_fork(proc: psutil.Process) -> bool:
    """The server's AOF-rewrite or save fork has its command line; its CPU clock starts at zero,
    so taking it for the server once showed Valkey at -0.06 cores in the sweep."""
    try:
        parent = proc.parent()
        return parent is not None and "valkey" in Path(parent.cmdline()[0]).name
    except (psutil.Error, IndexError):
        return False
