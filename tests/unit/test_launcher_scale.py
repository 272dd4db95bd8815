"""`ridepulse up --scale`: which services may run as replicas, and what each replica is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from ridepulse.cli import app
from ridepulse.launcher import parse_scale, service_specs
from ridepulse.settings import Settings


def test_scale_pairs_are_parsed_per_service() -> None:
    assert parse_scale(None) == {}
    assert parse_scale("pricing=2, matching=3") == {"pricing": 2, "matching": 3}
    assert parse_scale("eta=2") == {"eta": 2}


@pytest.mark.parametrize(
    "text",
    ["ingest=2", "dashboard=2", "janitor=2", "pricing", "pricing=x", "pricing=0", "pricing=9"],
)
def test_scale_refuses_what_cannot_run_as_replicas(text: str) -> None:
    with pytest.raises(ValueError, match="--scale"):
        parse_scale(text)


def test_pricing_replicas_get_their_own_consumer_names_logs_and_the_leases(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1", scale="pricing=2")
    client = redis.Redis(host="127.0.0.1", port=1)  # never connected: the probes are lazy
    specs = {s.name: s for s in service_specs(settings, client, "secret")}
    assert "pricing" not in specs
    first, second = specs["pricing-1"], specs["pricing-2"]
    assert first.argv[-2:] == ["run", "pricing"] and second.argv[-2:] == ["run", "pricing"]
    assert first.env["RIDEPULSE_CONSUMER_NAME"] != second.env["RIDEPULSE_CONSUMER_NAME"]
    assert first.log_path != second.log_path
    assert first.env["RIDEPULSE_LEASES"] == second.env["RIDEPULSE_LEASES"] == "1"
    # the others run once, unleased
    assert "RIDEPULSE_LEASES" not in specs["eta"].env
    assert specs["matching"].env["RIDEPULSE_CONSUMER_NAME"] == "matching-1"


def test_up_refuses_a_bad_scale_before_starting_anything() -> None:
    result = CliRunner().invoke(app, ["up", "--scale", "ingest=2"])
    assert result.exit_code == 1
    assert "cannot run as replicas" in result.output


def test_eta_replicas_get_their_own_consumer_names_logs_and_the_leases(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1", scale="eta=2")
    client = redis.Redis(host="127.0.0.1", port=1)  # never connected: the probes are lazy
    specs = {s.name: s for s in service_specs(settings, client, "secret")}
    assert "eta" not in specs
    first, second = specs["eta-1"], specs["eta-2"]
    assert first.argv[-2:] == ["run", "eta"] and second.argv[-2:] == ["run", "eta"]
    assert (first.env["RIDEPULSE_CONSUMER_NAME"], second.env["RIDEPULSE_CONSUMER_NAME"]) == (
        "eta-1",
        "eta-2",
    )
    assert first.log_path != second.log_path
    assert first.env["RIDEPULSE_LEASES"] == second.env["RIDEPULSE_LEASES"] == "1"
    assert first.nice == second.nice == settings.telemetry_nice  # still a telemetry service
    assert "RIDEPULSE_LEASES" not in specs["pricing"].env
