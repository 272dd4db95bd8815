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

from loadtests.behaviours.ranges import ANY, AT_LEAST_ONE, COUNT, PERIOD_S, PROBABILITY, Range

T = TypeVar("T")


class KnobError(ValueError):
    """Bad knobs, one line each; str() is the lines, so a caller prints it and exits 1."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
        """Parse the environment; every malformed or out-of-range value is listed in one
        KnobError, a line each naming its variable."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = source.get(name)
            if raw is None or not raw.strip():
                continue  # unset and empty both mean "the default"
            try:
                values[f.name] = PARSERS[f.name](raw.strip())
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        config = cls(**values)  # a malformed value stays at its default, so its range is not judged
        try:
            config.validate()
        except KnobError as exc:
            problems += exc.problems
        if problems:
            raise KnobError(problems)
        return config

    def validate(self) -> None:
        """Every number within its RANGES row, the shape known, the rush's peak above its base."""
        problems = []
        for name, allowed in RANGES.items():
            value = getattr(self, name)
            problem = None if value is None else allowed.problem(value)
            if problem:
                problems.append(f"{ENV_NAMES[name]}={value}: {problem}")
        if self.shape not in {"", "rush"}:
            problems.append(f"RIDEPULSE_SIM_SHAPE={self.shape!r}: must be 'rush' or empty")
        if self.rush_peak_users < self.rush_base_users:
            problems.append(
                f"RIDEPULSE_SIM_RUSH_PEAK_USERS={self.rush_peak_users}: must be at least "
                f"RIDEPULSE_SIM_RUSH_BASE_USERS={self.rush_base_users}"
            )
        if problems:
            raise KnobError(problems)

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


# Every number's allowed range (tests/unit/test_behaviour_config.py fails a number without one).
RANGES: dict[str, Range] = {
    "ping_interval_s": PERIOD_S,
    "accept_probability": PROBABILITY,
    "fleet_size": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "seed": ANY,  # any integer seeds random.Random
    "time_scale": Range(gt=0),
    "start_hour": Range(ge=0, lt=24),
    "drivers": COUNT,
    "riders": COUNT,
    "fleet_users": COUNT,
    "driver_weight": COUNT,
    "rider_weight": COUNT,
    "fleet_weight": COUNT,
    "mean_online_s": PERIOD_S,
    "mean_offline_s": PERIOD_S,
    "quote_probability": PROBABILITY,
    "cancel_probability": PROBABILITY,
    "rider_poll_s": PERIOD_S,
    "rider_think_s": PERIOD_S,  # the mean of an exponential draw: 0 divides by zero
    "rush_peak_users": AT_LEAST_ONE,
    "rush_base_users": COUNT,
    "rush_ramp_s": Range(ge=0),
    "rush_peak_s": PERIOD_S,
    "rush_drain_s": Range(ge=0),
    "slo_fail_ratio": PROBABILITY,
    "slo_p95_ms": Range(gt=0),
    "slo_grace_s": Range(ge=0),
}


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
