"""`ridepulse up --scale`: which services may run as replicas, and what each replica is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from ridepulse.cli import app
from ridepulse.launcher import service_specs
from ridepulse.scale import parse_scale
from ridepulse.settings import Settings
from ridepulse.supervisor import ChildSpec


def test_scale_pairs_are_parsed_per_service() -> None:
    assert parse_scale(None) == {}
    assert parse_scale("pricing=2, matching=3") == {"pricing": 2, "matching": 3}
    assert parse_scale("eta=2") == {"eta": 2}


@pytest.mark.parametrize(
    "text",
    ["ingest=2", "dashboard=2", "janitor=2", "pricing", "pricing=x", "pricing=0", "pricing=9"],
)
def test_scale_refuses_what_cannot_run_as_replicas(text: str) -> None:
    with pytest.raises(ValueError, match=r"service=count|cannot run as replicas|needs 1 to 8"):
        parse_scale(text)


def _specs(
    tmp_path: Path, scale: str | None = None, telemetry_nice: int | None = None
) -> dict[str, ChildSpec]:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1", scale=scale)
    if telemetry_nice is not None:
        settings = settings.model_copy(update={"telemetry_nice": telemetry_nice})
    client = redis.Redis(host="127.0.0.1", port=1)  # never connected: the probes are lazy
    return {s.name: s for s in service_specs(settings, client, "secret")}


@pytest.mark.parametrize(("service", "other"), [("pricing", "eta"), ("eta", "pricing")])
def test_leased_replicas_get_their_own_consumer_names_logs_and_the_leases(
    tmp_path: Path, service: str, other: str
) -> None:
    specs = _specs(tmp_path, f"{service}=2")
    assert service not in specs
    first, second = specs[f"{service}-1"], specs[f"{service}-2"]
    assert first.argv[-2:] == ["run", service] and second.argv[-2:] == ["run", service]
    assert (first.env["RIDEPULSE_CONSUMER_NAME"], second.env["RIDEPULSE_CONSUMER_NAME"]) == (
        f"{service}-1",
        f"{service}-2",
    )
    assert first.log_path != second.log_path
    assert first.env["RIDEPULSE_LEASES"] == second.env["RIDEPULSE_LEASES"] == "1"
    niced = Settings(data_dir=tmp_path).telemetry_nice
    telemetry_nice = niced if service == "eta" else 0  # eta stays niced
    assert first.nice == second.nice == telemetry_nice
    # the others run once, unleased
    assert "RIDEPULSE_LEASES" not in specs[other].env
    assert specs["matching"].env["RIDEPULSE_CONSUMER_NAME"] == "matching-1"


def test_up_refuses_a_bad_scale_before_starting_anything() -> None:
    result = CliRunner().invoke(app, ["up", "--scale", "ingest=2"])
    assert result.exit_code == 1
    assert "--scale='ingest=2': 'ingest' cannot run as replicas" in result.output


@pytest.mark.parametrize("value", ["ingest=2", "pricing=0", "dashboard=2"])
def test_up_refuses_a_bad_scale_from_the_environment_too(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a bad value stops the command before anything starts, naming the variable. From
    RIDEPULSE_SCALE it was a traceback, after the embedded server or a whole cluster started."""
    monkeypatch.setenv("RIDEPULSE_SCALE", value)
    result = CliRunner().invoke(app, ["up", "--no-sim", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: RIDEPULSE_SCALE={value!r}: "), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "redis").exists(), "a server was started"


def test_matching_geo_runs_as_two_niced_replicas_by_default_and_one_on_request(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    specs = _specs(tmp_path)
    geo = [specs["matching-geo-1"], specs["matching-geo-2"]]
    assert "matching-geo" not in specs
    assert [g.argv[-2:] for g in geo] == [["run", "matching-geo"]] * 2
    assert [g.env["RIDEPULSE_CONSUMER_NAME"] for g in geo] == [
        "matching-geo-1",
        "matching-geo-2",
    ]
    assert {g.nice for g in geo} == {settings.telemetry_nice}
    assert "RIDEPULSE_LEASES" not in geo[0].env
    one = _specs(tmp_path, "matching-geo=1")
    assert "matching-geo" in one and "matching-geo-1" not in one


def test_telemetry_nice_0_runs_every_service_at_the_launchers_priority(tmp_path: Path) -> None:
    """README: `RIDEPULSE_TELEMETRY_NICE` "0 = off"."""
    assert {spec.nice for spec in _specs(tmp_path).values()} != {0}  # the default nices some
    assert {spec.nice for spec in _specs(tmp_path, telemetry_nice=0).values()} == {0}


def test_each_consumer_process_gets_its_own_metrics_port_in_launch_order(tmp_path: Path) -> None:
    """RIDEPULSE_METRICS_PORT used to reach every child alike: all but one failed to bind."""
    settings = Settings(
        data_dir=tmp_path, redis_url="redis://127.0.0.1:1", scale="pricing=2", metrics_port=9100
    )
    client = redis.Redis(host="127.0.0.1", port=1)  # never connected: the probes are lazy
    ports = {s.name: s.env["RIDEPULSE_METRICS_PORT"] for s in service_specs(settings, client, "s")}
    assert ports == {
        "ingest": "0",  # /metrics on the API port
        "matching": "9100",
        "matching-geo-1": "9101",
        "matching-geo-2": "9102",
        "eta": "9103",
        "pricing-1": "9104",
        "pricing-2": "9105",
        "dashboard": "0",
        "janitor": "9106",
    }
    off = {
        s.env["RIDEPULSE_METRICS_PORT"]
        for s in service_specs(
            Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1"), client, "s"
        )
    }
    assert off == {"0"}
