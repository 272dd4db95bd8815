"""The simulation's knobs, read once from environment variables into one typed object.

Locust is configured by its own CLI; what the simulated city does (how often drivers ping, how
picky they are, how big a fleet user is, what the SLO gate demands) travels as RIDEPULSE_SIM_* and
RIDEPULSE_SLO_* variables, so `ridepulse up`, CI and docker-compose all drive it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every field maps to an env var named in its metadata (see ENV_NAMES)."""

    ping_interval_s: float = 4.0
    accept_probability: float = 0.9
    fleet_size: int = 1000
    batch_size: int = 500
    seed: int | None = None
    secret: str | None = None
    data_dir: Path = Path(".ridepulse")
    markets_file: Path | None = None
    market: str | None = None
    use_ws: bool = False
    time_scale: float = 1.0
    start_hour: float = 8.0
    drivers: int = 0
    riders: int = 0
    fleet_users: int = 0
    driver_weight: int = 10
    rider_weight: int = 3
    fleet_weight: int = 0  # the demo stays modest; give FleetUser users explicitly
    mean_online_s: float = 1800.0
    mean_offline_s: float = 120.0
    quote_probability: float = 0.5
    cancel_probability: float = 0.08
    rider_poll_s: float = 2.0
    rider_think_s: float = 20.0
    shape: str = ""
    rush_peak_users: int = 300
    rush_base_users: int = 30
    rush_ramp_s: float = 120.0
    rush_peak_s: float = 300.0
    rush_drain_s: float = 120.0
    slo_fail_ratio: float = 0.01
    slo_p95_ms: float = 500.0
    slo_check_rides: bool = True
    slo_grace_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimConfig:
        """Parse the environment; a malformed value raises ValueError naming its variable."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = source.get(name)
            if raw is None or not raw.strip():
                continue  # unset and empty both mean "the default"
            try:
                values[f.name] = PARSERS[f.name](raw.strip())
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: {exc}") from None
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for name in (
            "accept_probability",
            "quote_probability",
            "cancel_probability",
            "slo_fail_ratio",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"{ENV_NAMES[name]} must be within [0, 1], got {getattr(self, name)}"
                )
        for name in (
            "ping_interval_s",
            "time_scale",
            "rider_poll_s",
            "mean_online_s",
            "mean_offline_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{ENV_NAMES[name]} must be positive, got {getattr(self, name)}")
        for name in ("fleet_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_NAMES[name]} must be at least 1, got {getattr(self, name)}")
        for name in (
            "drivers",
            "riders",
            "fleet_users",
            "driver_weight",
            "rider_weight",
            "fleet_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{ENV_NAMES[name]} must not be negative, got {getattr(self, name)}"
                )
        if self.shape not in {"", "rush"}:
            raise ValueError(f"RIDEPULSE_SIM_SHAPE must be 'rush' or empty, got {self.shape!r}")

    def resolve_secret(self) -> str:
        """RIDEPULSE_SECRET, else the secret `ridepulse up` wrote into the data dir; never invent
        one."""
        if self.secret:
            return self.secret
        path = self.data_dir / "secret"
        if path.exists():
            return path.read_text().strip()
        raise RuntimeError(
            f"no signing secret: set RIDEPULSE_SECRET, or RIDEPULSE_DATA_DIR to the data dir of "
            f"`ridepulse up` (no {path} here)"
        )


def parse_bool(raw: str) -> bool:
    word = raw.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _optional(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    return lambda raw: parse(raw) if raw else None


ENV_NAMES: dict[str, str] = {
    "secret": "RIDEPULSE_SECRET",
    "data_dir": "RIDEPULSE_DATA_DIR",
    "markets_file": "RIDEPULSE_MARKETS_FILE",
    **{
        name: f"RIDEPULSE_SLO_{name.removeprefix('slo_').upper()}"
        for name in ("slo_fail_ratio", "slo_p95_ms", "slo_check_rides", "slo_grace_s")
    },
}
_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": parse_bool,
    "str": str,
    "int | None": _optional(int),
    "str | None": _optional(str),
    "Path": Path,
    "Path | None": _optional(Path),
}
PARSERS: dict[str, Callable[[str], Any]] = {}
for _f in fields(SimConfig):
    ENV_NAMES.setdefault(_f.name, f"RIDEPULSE_SIM_{_f.name.upper()}")
    PARSERS[_f.name] = _TYPES[str(_f.type)]
