"""The simulation's knobs (env → SimConfig) and the per-process runtime built from them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from loadtests.behaviours.config import ENV_NAMES, RANGES, KnobError, SimConfig
from loadtests.platform import tool
from loadtests.runtime import build_runtime

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
# a real locust process: importing locust here would monkey-patch this one
LOCUST = [tool("locust"), "-f", str(LOCUSTFILE)]


def test_config_defaults_work_on_a_laptop() -> None:
    config = SimConfig.from_env({})
    assert config.ping_interval_s == 4.0 and config.accept_probability == 0.9
    assert config.fleet_size == 1000 and config.batch_size == 500
    assert config.seed is None and config.use_ws is False


def test_config_parses_env() -> None:
    config = SimConfig.from_env(
        {
            "RIDEPULSE_SIM_PING_INTERVAL_S": "2.5",
            "RIDEPULSE_SIM_ACCEPT_PROBABILITY": "0.75",
            "RIDEPULSE_SIM_FLEET_SIZE": "3000",
            "RIDEPULSE_SIM_BATCH_SIZE": "1000",
            "RIDEPULSE_SIM_SEED": "42",
            "RIDEPULSE_SECRET": "s3cret",
            "RIDEPULSE_MARKETS_FILE": "/tmp/markets.json",
            "RIDEPULSE_SIM_USE_WS": "yes",
            "RIDEPULSE_SIM_DRIVERS": "200",
            "RIDEPULSE_SLO_P95_MS": "250",
            "RIDEPULSE_SIM_SHAPE": "rush",
            "RIDEPULSE_SIM_MARKET": "",
        }
    )
    assert config.ping_interval_s == 2.5 and config.accept_probability == 0.75
    assert config.fleet_size == 3000 and config.batch_size == 1000 and config.seed == 42
    assert config.secret == "s3cret" and config.markets_file == Path("/tmp/markets.json")
    assert config.use_ws is True and config.drivers == 200 and config.slo_p95_ms == 250.0
    assert config.shape == "rush" and config.market is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RIDEPULSE_SIM_ACCEPT_PROBABILITY", "1.5"),
        ("RIDEPULSE_SIM_PING_INTERVAL_S", "0"),
        ("RIDEPULSE_SIM_FLEET_SIZE", "lots"),
        ("RIDEPULSE_SIM_USE_WS", "maybe"),
        ("RIDEPULSE_SIM_SHAPE", "tsunami"),
        ("RIDEPULSE_SIM_DRIVERS", "-1"),
        ("RIDEPULSE_SIM_PING_INTERVAL_S", "nan"),  # pacing of NaN: a hot loop
        ("RIDEPULSE_SIM_PING_INTERVAL_S", "inf"),  # one ping, then silence
        ("RIDEPULSE_SIM_RIDER_THINK_S", "0"),  # ZeroDivisionError in every rider
        ("RIDEPULSE_SIM_RIDER_THINK_S", "-1"),
        ("RIDEPULSE_SLO_P95_MS", "nan"),  # silently no p95 gate
        ("RIDEPULSE_SLO_P95_MS", "-1"),  # always fails
        ("RIDEPULSE_SLO_GRACE_S", "-1"),
        ("RIDEPULSE_SIM_START_HOUR", "99"),
        ("RIDEPULSE_SIM_START_HOUR", "-5"),
        ("RIDEPULSE_SIM_START_HOUR", "nan"),
        ("RIDEPULSE_SIM_TIME_SCALE", "inf"),
        ("RIDEPULSE_SIM_MEAN_ONLINE_S", "nan"),
        ("RIDEPULSE_SIM_RUSH_BASE_USERS", "-3"),
        ("RIDEPULSE_SIM_RUSH_PEAK_USERS", "-5"),
        ("RIDEPULSE_SIM_RUSH_PEAK_S", "nan"),
        ("RIDEPULSE_SIM_RUSH_RAMP_S", "-10"),
    ],
)
def test_config_rejects_bad_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimConfig.from_env({name: value})


def test_every_numeric_knob_has_a_range() -> None:
    """A new number without a RANGES row would let NaN, inf or a sign slip through again."""
    numeric = {f.name for f in fields(SimConfig) if str(f.type).split(" | ")[0] in {"int", "float"}}
    assert numeric - RANGES.keys() == set()
    assert RANGES.keys() - numeric == set()  # a row for a knob that is gone or not a number


def test_every_bad_knob_is_listed_on_a_line_of_its_own() -> None:
    with pytest.raises(KnobError) as caught:
        SimConfig.from_env(
            {
                "RIDEPULSE_SIM_FLEET_SIZE": "lots",
                "RIDEPULSE_SIM_PING_INTERVAL_S": "nan",
                "RIDEPULSE_SIM_RUSH_PEAK_USERS": "20",
            }
        )
    assert caught.value.problems == [
        "RIDEPULSE_SIM_FLEET_SIZE='lots': invalid literal for int() with base 10: 'lots'",
        "RIDEPULSE_SIM_PING_INTERVAL_S=nan: must be a finite number > 0",
        "RIDEPULSE_SIM_RUSH_PEAK_USERS=20: must be at least RIDEPULSE_SIM_RUSH_BASE_USERS=30",
    ]


def test_locust_refuses_bad_knobs_before_any_user_starts_without_a_traceback() -> None:
    env = {
        **os.environ,
        "RIDEPULSE_SECRET": "x" * 32,
        "RIDEPULSE_SIM_RIDER_THINK_S": "0",
        "RIDEPULSE_SLO_GRACE_S": "-1",
    }
    done = subprocess.run(
        [*LOCUST, "--headless", "-u", "1", "-t", "5s", "--host", "http://127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-2:] == [
        "error: RIDEPULSE_SIM_RIDER_THINK_S=0.0: must be a finite number > 0",
        "error: RIDEPULSE_SLO_GRACE_S=-1.0: must be a finite number >= 0",
    ], done.stderr


def test_locust_names_a_missing_secret_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RIDEPULSE_SECRET"}
    done = subprocess.run(
        [*LOCUST, "--headless", "-u", "1", "-t", "5s", "--host", "http://127.0.0.1:9"],
        env={**env, "RIDEPULSE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: no signing secret"), done.stderr


def test_every_knob_has_a_ridepulse_env_name() -> None:
    assert all(n.startswith("RIDEPULSE_") for n in ENV_NAMES.values())
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)


def test_secret_comes_from_env_or_the_data_dir_never_invented(tmp_path: Path) -> None:
    assert SimConfig(secret="a").resolve_secret() == "a"
    (tmp_path / "secret").write_text("from-disk\n")
    assert SimConfig(data_dir=tmp_path).resolve_secret() == "from-disk"
    with pytest.raises(RuntimeError, match="RIDEPULSE_SECRET"):
        SimConfig(data_dir=tmp_path / "missing").resolve_secret()


def test_runtime_seeds_each_actor_independently() -> None:
    runtime = build_runtime(SimConfig(seed=7, secret="x" * 32))
    again = build_runtime(SimConfig(seed=7, secret="x" * 32))
    assert runtime.rng("driver", 3).random() == again.rng("driver", 3).random()
    assert runtime.rng("driver", 3).random() != runtime.rng("driver", 4).random()
    assert [runtime.next_index("rider") for _ in range(3)] == [0, 1, 2]
    assert runtime.run_id != again.run_id  # a new run never reuses ids or idempotency keys
    assert runtime.market.id == "sf"


def test_the_behaviour_modules_never_import_locust() -> None:
    """Locust monkey-patches sockets on import; the pytest process must stay clean."""
    assert "locust" not in sys.modules
