"""docker-compose.yml: valid Compose, every RidePulse service on one image, consumers scalable,
nothing starting before Redis is healthy."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

from ridepulse.services import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CONSUMERS = (
    "matching",
    "matching-geo",
    "eta",
    "pricing",
    "janitor",
)  # no HTTP port: these scale with --scale


def _offline_registry() -> referencing.Registry[Any]:
    """Every reference must resolve inside the schema file itself: tests never use the network."""

    def refuse(uri: str) -> referencing.Resource[Any]:
        raise LookupError(f"tests do not fetch schemas: {uri}")

    return referencing.Registry(retrieve=refuse)  # type: ignore[call-arg]


def _compose_validator() -> jsonschema.protocols.Validator:
    """The compose-spec schema that check-jsonschema vendors, used as is and offline."""
    text = (
        resources.files("check_jsonschema")
        .joinpath("builtin_schemas/vendor/compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, registry=_offline_registry())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def _is_ridepulse(name: str) -> bool:
    return name != "redis" and not name.startswith("locust")


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
        for e in _compose_validator().iter_errors(compose)
    ]
    assert not errors, "docker-compose.yml violates the compose spec:\n" + "\n".join(errors)


def test_compose_spec_validation_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    """Guards the test above against a schema that accepts anything."""
    broken = {**compose, "services": {**compose["services"], "eta": {"imagee": "x"}}}
    assert not _compose_validator().is_valid(broken)


def test_every_ridepulse_service_runs_from_the_shared_image(
    services: dict[str, dict[str, Any]],
) -> None:
    assert sorted(n for n in services if _is_ridepulse(n)) == sorted(SERVICE_NAMES)
    assert re.search(r'^ENTRYPOINT \["ridepulse"\]$', DOCKERFILE.read_text(), re.M), (
        "the Dockerfile must run `ridepulse` so a service's command is `run <name>`"
    )
    for name, service in services.items():
        if not _is_ridepulse(name):
            continue
        assert service.get("build") == ".", f"{name} does not build the shared image"
        assert "entrypoint" not in service, f"{name} overrides the `ridepulse` entrypoint"
        command = service.get("command")
        assert command == ["run", name], f"{name} runs `ridepulse {command}`, not `run {name}`"
        assert command[1] in SERVICE_NAMES


def test_consumers_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    for name in CONSUMERS:
        assert "container_name" not in services[name], f"{name} has a fixed container_name"
        assert "ports" not in services[name], f"{name} publishes host ports"
    named = [n for n, s in services.items() if "container_name" in s]
    assert not named, f"fixed container names stop `--scale`: {named}"


def test_every_service_waits_for_a_healthy_redis(services: dict[str, dict[str, Any]]) -> None:
    assert "healthcheck" in services["redis"], "redis has no healthcheck to wait on"
    for name, service in services.items():
        if name == "redis":
            continue
        condition = service.get("depends_on", {}).get("redis", {}).get("condition")
        assert condition == "service_healthy", f"{name} starts without waiting for redis"


def test_redis_is_durable_and_password_protected(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in redis["volumes"]), "valkey data is not on a volume"
    for name, service in services.items():
        if _is_ridepulse(name):
            url = service["environment"]["RIDEPULSE_REDIS_URL"]
            assert url == f"redis://:{password}@redis:6379/0", f"{name} connects with {url}"
            assert service["environment"].get("RIDEPULSE_SECRET"), f"{name} has no secret"


def test_http_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, port in (("ingest", 8000), ("dashboard", 8080)):
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in check, f"{name} health check: {check}"


def test_locust_runs_only_under_the_load_profile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("locust", "locust-worker"):
        service = services[name]
        assert service["profiles"] == ["load"], f"{name} would start with every `up`"
        assert service["entrypoint"] == ["locust"]
        assert service["command"][:2] == ["-f", "loadtests/locustfile.py"]
    assert "--master" in services["locust"]["command"]
    assert "--worker" in services["locust-worker"]["command"]
