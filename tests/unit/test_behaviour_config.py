"""The simulation's knobs (env → SimConfig) and the per-process runtime built from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadtests.behaviours.config import ENV_NAMES, SimConfig
from loadtests.runtime import build_runtime


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
    ],
)
def test_config_rejects_bad_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimConfig.from_env({name: value})


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
