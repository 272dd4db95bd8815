"""The whole platform for the end-to-end figure: `ridepulse up --no-sim` started by the shared
launcher (loadtests/platform.py) on free loopback ports, with its own data dir."""

from __future__ import annotations

from pathlib import Path

import psutil

from loadtests.platform import Platform


class Stack(Platform):
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, "--no-sim", env=env)

    def services(self) -> dict[str, psutil.Process]:
        """Service name → process (`ridepulse run <name>` children, and the Valkey server)."""
        return self.processes()
