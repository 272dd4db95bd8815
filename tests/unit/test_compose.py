"""docker-compose.yml: valid Compose, every RidePulse service on one image, consumers scalable,
nothing starting before Redis is healthy; no default secret, ports on loopback, and Valkey
with the ACL file and one user per service (docs/security.md)."""

from __future__ import annotations

import json
import re
import stat
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

from ridepulse import compose_acl
from ridepulse.acl import SERVICE_GRANTS, acl_file_text
from ridepulse.cluster import FULL_COVERAGE_ARGS, deal_slots, market_slot
from ridepulse.compose_acl import OPERATOR_PASSWORD_ENV, fresh_env, password_env
from ridepulse.markets import load_markets
from ridepulse.redis_server import AOF_REWRITE_ARGS
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
    """A platform service (not a Valkey node, the ACL writer, the cluster's init or locust)."""
    return name not in ("redis", "redis-acl") and not name.startswith(("locust", "valkey-"))


CLUSTER_NODES = [f"valkey-{i}" for i in range(1, 7)]


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
        # redis-acl writes the ACL file redis starts with; the cluster profile has its own nodes
        if name in ("redis", "redis-acl") or name.startswith("valkey-"):
            continue
        condition = service.get("depends_on", {}).get("redis", {}).get("condition")
        assert condition == "service_healthy", f"{name} starts without waiting for redis"


def test_redis_is_durable_and_runs_with_the_acl_file(services: dict[str, dict[str, Any]]) -> None:
    redis, writer = services["redis"], services["redis-acl"]
    command = redis["command"]
    assert "--requirepass" not in command, "one shared password instead of per-service users"
    acl_path = command[command.index("--aclfile") + 1]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    rewrite = command[command.index("--auto-aof-rewrite-percentage") :][:4]
    assert tuple(rewrite) == AOF_REWRITE_ARGS, "the embedded server's AOF rewrite policy"
    assert any(v.endswith(":/data") for v in redis["volumes"]), "valkey data is not on a volume"
    assert "ports" not in redis, "Valkey must not be published on the host"
    assert redis["depends_on"]["redis-acl"]["condition"] == "service_completed_successfully"
    assert writer["entrypoint"] == ["python", "-m", "ridepulse.compose_acl"]
    assert writer["command"][:2] == ["write", acl_path]
    shared = {v.split(":")[0] for v in writer["volumes"]} & {
        v.split(":")[0] for v in redis["volumes"]
    }
    assert shared, "redis does not mount the volume redis-acl writes the ACL file to"
    needed = {OPERATOR_PASSWORD_ENV, *(password_env(s) for s in SERVICE_GRANTS)}
    assert needed <= set(writer["environment"]), "redis-acl lacks some users' passwords"


def test_each_service_connects_as_its_own_redis_user(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if not _is_ridepulse(name):
            continue
        url = service["environment"]["RIDEPULSE_REDIS_URL"]
        expected = (
            r"^\$\{RIDEPULSE_REDIS_SCHEME:-redis\}://"
            rf"{re.escape(name)}:\$\{{{password_env(name)}:\?[^}}]+\}}"
            r"@\$\{RIDEPULSE_REDIS_ADDRESS:-redis:6379\}/0$"
        )
        assert re.match(expected, url), f"{name} connects with {url}"
        assert name in SERVICE_GRANTS, f"{name} has no ACL user in ridepulse/acl_grants.py"


def test_no_secret_has_a_default(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for variable in ("RIDEPULSE_SECRET", "RIDEPULSE_REDIS_PASSWORD"):
        uses = re.findall(rf"\$\{{{variable}(\w*)(:?[-?])", text)
        assert uses, f"{variable} is not used"
        defaulted = [v + op for v, op in uses if op != ":?"]
        assert not defaulted, f"{variable}… has a default or is optional: {defaulted}"


def test_compose_refuses_to_start_without_the_secrets(compose: dict[str, Any]) -> None:
    missing = _interpolation_errors(COMPOSE.read_text(encoding="utf-8"), {})
    required = {"RIDEPULSE_SECRET", OPERATOR_PASSWORD_ENV, *map(password_env, SERVICE_GRANTS)}
    assert required <= missing
    env = dict(line.split("=", 1) for line in fresh_env().splitlines())
    assert _interpolation_errors(COMPOSE.read_text(encoding="utf-8"), env) == set()


def test_ports_are_published_on_loopback_unless_told_otherwise() -> None:
    env = dict(line.split("=", 1) for line in fresh_env().splitlines())
    published = _published(env)
    assert published, "nothing is published?"
    assert all(p.startswith("127.0.0.1:") for p in published), published
    exposed = _published({**env, "RIDEPULSE_PUBLISH_ADDR": "0.0.0.0"})
    assert {p.split(":", 1)[1] for p in exposed} == {p.split(":", 1)[1] for p in published}
    assert all(p.startswith("0.0.0.0:") for p in exposed)


def test_the_acl_writer_makes_a_private_file_of_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(line.split("=", 1) for line in fresh_env().splitlines())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    target = tmp_path / "users.acl"
    compose_acl.main(["write", str(target)])
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    passwords = {s: env[password_env(s)] for s in SERVICE_GRANTS}
    assert text == acl_file_text(env[OPERATOR_PASSWORD_ENV], passwords, "rp")
    assert not any(p in text for p in env.values()), "a password or the secret in the clear"


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _interpolate(text: str, env: dict[str, str], errors: set[str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (enough for this file)."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            errors.add(name)
            return ""
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(value, text)


def _interpolation_errors(text: str, env: dict[str, str]) -> set[str]:
    errors: set[str] = set()
    _interpolate(text, env, errors)
    return errors


def _published(env: dict[str, str]) -> list[str]:
    errors: set[str] = set()
    loaded = yaml.safe_load(_interpolate(COMPOSE.read_text(encoding="utf-8"), env, errors))
    assert not errors
    return [p for s in loaded["services"].values() for p in s.get("ports", [])]


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


# --- the `cluster` profile -----------------------------------------------------------------


def test_the_cluster_profile_runs_six_durable_nodes_with_the_acl_file(
    services: dict[str, dict[str, Any]],
) -> None:
    writer_volume = services["redis-acl"]["volumes"][0].split(":")[0]
    data_volumes = set()
    for name in CLUSTER_NODES:
        node = services[name]
        assert node["profiles"] == ["cluster"], f"{name} would start with every `up`"
        assert node["hostname"] == name  # what it announces, so redirects name resolvable hosts
        command = node["command"][0]
        for option in (
            "--aclfile /acl/users.acl",
            "--appendonly yes",
            "--appendfsync everysec",
            " ".join(AOF_REWRITE_ARGS),
            "--cluster-enabled yes",
            "--cluster-preferred-endpoint-type hostname",
            # one shard down takes down its own markets only, as under `ridepulse cluster up`
            " ".join(FULL_COVERAGE_ARGS),
        ):
            assert option in command, f"{name} lacks {option}"
        assert "--requirepass" not in command and "--masterauth" not in command  # not in argv
        assert "ports" not in node, f"{name} must not be published on the host"
        assert f"{writer_volume}:/acl:ro" in node["volumes"]
        assert node["depends_on"]["redis-acl"]["condition"] == "service_completed_successfully"
        assert "valkey-cli ping | grep -q PONG" in " ".join(node["healthcheck"]["test"])
        data_volumes |= {v.split(":")[0] for v in node["volumes"] if v.endswith(":/data")}
    assert len(data_volumes) == 6, "every node needs its own data volume"


def test_the_cluster_is_formed_once_every_node_is_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["valkey-cluster-init"]
    assert init["profiles"] == ["cluster"]
    assert init["entrypoint"] == ["python", "-m", "ridepulse.compose_cluster"]
    nodes = [arg for arg in init["command"] if not arg.startswith("--") and ":" in arg]
    assert nodes == [f"{n}:6379" for n in CLUSTER_NODES]
    assert init["command"][init["command"].index("--replicas") + 1] == "1"
    assert {n: d["condition"] for n, d in init["depends_on"].items()} == dict.fromkeys(
        CLUSTER_NODES, "service_healthy"
    )
    assert OPERATOR_PASSWORD_ENV in init["environment"]


def test_services_wait_for_the_cluster_only_under_its_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if not _is_ridepulse(name):
            continue
        wait = service["depends_on"]["valkey-cluster-init"]
        assert wait == {"condition": "service_completed_successfully", "required": False}, name


def _urls(env: dict[str, str]) -> dict[str, str]:
    errors: set[str] = set()
    loaded = yaml.safe_load(_interpolate(COMPOSE.read_text(encoding="utf-8"), env, errors))
    assert not errors
    return {
        name: s["environment"]["RIDEPULSE_REDIS_URL"]
        for name, s in loaded["services"].items()
        if _is_ridepulse(name)
    }


def test_the_cluster_env_points_every_service_at_the_cluster() -> None:
    single = dict(line.split("=", 1) for line in fresh_env().splitlines())
    cluster = dict(line.split("=", 1) for line in fresh_env(cluster=True).splitlines())
    assert cluster["COMPOSE_PROFILES"] == "cluster"
    for name, url in _urls(single).items():
        assert url == f"redis://{name}:{single[password_env(name)]}@redis:6379/0"
    for name, url in _urls(cluster).items():
        assert url == f"redis+cluster://{name}:{cluster[password_env(name)]}@valkey-1:6379/0"


def test_valkey_cli_finds_the_password_in_the_variable_it_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    """valkey-cli reads REDISCLI_AUTH (the name its source kept); without it every health
    check would get NOAUTH and nothing would start."""
    for name in ("redis", *CLUSTER_NODES):
        env = services[name]["environment"]
        assert env["REDISCLI_AUTH"].startswith("${RIDEPULSE_REDIS_PASSWORD:?"), name


def test_each_market_is_on_its_own_primary_of_the_compose_cluster() -> None:
    owner = deal_slots(3, list(load_markets(only="all").by_id))
    assert owner[market_slot("sf")] != owner[market_slot("nyc")]


def test_the_env_file_is_private_from_creation_and_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    compose_acl.main(["env", "--out", str(target)])
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    first = target.read_text()
    assert "RIDEPULSE_SECRET=" in first
    with pytest.raises(SystemExit):
        compose_acl.main(["env", "--out", str(target)])
    assert target.read_text() == first, "an existing .env was replaced"
