"""The compose `cluster` profile's own commands, run for real: six nodes started with the exact
shell command docker-compose.yml gives them (the embedded Valkey binary standing in for the
image's, loopback ports standing in for the service names), formed by
`python -m ridepulse.compose_cluster` as `valkey-cluster-init` runs it. No Docker engine is
needed to know the profile's server options, ACL file and forming step work."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from ridepulse.acl import SERVICE_GRANTS, write_acl_file
from ridepulse.cluster import market_slot
from ridepulse.compose_acl import OPERATOR_PASSWORD_ENV
from ridepulse.redis_server import server_binary
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUS_OFFSET = 10_000  # Valkey's default, which the compose nodes use
PASSWORD = "operator-secret"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_pair(rng: random.Random, taken: set[int]) -> int:
    """A port whose default bus port (+10,000) is free as well."""
    while True:
        port = rng.randrange(20_000, 45_000)
        if port not in taken and _free(port) and _free(port + BUS_OFFSET):
            taken.add(port)
            return port


def _node_shell(compose: dict[str, Any], node: Path, acl: Path, port: int) -> str:
    """The node's command from docker-compose.yml, pointed at this test's files and port."""
    command: str = compose["services"]["valkey-1"]["command"][0]
    return (
        command.replace("$$", "$")  # compose's escape for a literal $
        .replace("/data/", f"{node}/")
        .replace("/acl/users.acl", str(acl))
        .replace("exec valkey-server", f"exec {server_binary()}")
        .replace('"$(hostname)"', "localhost")
        + f" --port {port} --bind 127.0.0.1"
    )


@pytest.fixture
def compose_nodes(tmp_path: Path) -> Iterator[list[int]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    acl = tmp_path / "users.acl"
    passwords = {user: f"{user}-secret" for user in SERVICE_GRANTS}
    write_acl_file(acl, PASSWORD, passwords, "rp")
    env = {**os.environ, OPERATOR_PASSWORD_ENV: PASSWORD}
    rng, taken = random.Random(7), set[int]()
    ports, processes = [], []
    try:
        for index in range(6):
            node = tmp_path / f"node-{index}"
            node.mkdir()
            port = _port_pair(rng, taken)
            shell = _node_shell(compose, node, acl, port)
            with (node / "out.log").open("wb") as log:  # the child keeps its own descriptor
                processes.append(
                    subprocess.Popen(
                        ["sh", "-ec", shell], cwd=node, env=env, stdout=log, stderr=log
                    )
                )
            ports.append(port)
        for port in ports:
            _wait_answering(port)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def _wait_answering(port: int) -> None:
    client = redis.Redis(port=port, password=PASSWORD)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until_sync(pings, timeout_s=20, what=f"node :{port} answering")
    client.close()


def _form(ports: list[int]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ridepulse.compose_cluster"]
        + [f"127.0.0.1:{p}" for p in ports]
        + ["--replicas", "1", "--timeout-s", "60"],
        env={**os.environ, OPERATOR_PASSWORD_ENV: PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_nodes_form_a_cluster_with_each_market_on_its_own_primary(
    compose_nodes: list[int],
) -> None:
    formed = _form(compose_nodes)
    assert formed.returncode == 0, formed.stderr
    assert "formed: 3 primaries, 1 replica(s) each" in formed.stdout
    assert "cluster_state:ok" in formed.stdout

    operator = redis.Redis(port=compose_nodes[0], password=PASSWORD, decode_responses=True)
    shards: Any = operator.cluster("SHARDS")
    owners = {}
    for shard in shards:
        slots = shard["slots"]  # redis-py gives each shard as a dict, its nodes as dicts
        roles = sorted(node["role"] for node in shard["nodes"])
        assert roles == ["master", "replica"], f"a shard without its replica: {shard}"
        for start, end in zip(slots[::2], slots[1::2], strict=True):
            for market in ("sf", "nyc"):
                if int(start) <= market_slot(market) <= int(end):
                    owners[market] = id(shard)
    operator.close()
    assert len(owners) == 2 and owners["sf"] != owners["nyc"]

    # every node loaded the ACL file: a service's user is refused what it may not do; and a
    # shard with no node left would take down its own markets only, not every node
    for port in compose_nodes:
        operator_node: Any = redis.Redis(port=port, password=PASSWORD, decode_responses=True)
        coverage = operator_node.config_get("cluster-require-full-coverage")
        operator_node.close()
        assert coverage == {"cluster-require-full-coverage": "no"}, f":{port} {coverage}"
        node = redis.Redis(port=port, username="matching", password="matching-secret")
        assert node.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            node.flushall()
        node.close()

    again = _form(compose_nodes)  # a later `docker compose up`
    assert again.returncode == 0, again.stderr
    assert "cluster already formed" in again.stdout


def test_an_init_stopped_after_the_nodes_met_is_formed_by_the_next(
    compose_nodes: list[int],
) -> None:
    """`valkey-cluster-init` killed between CLUSTER MEET and the replicas: the nodes know each
    other, which the next init took for a formed cluster and waited on until its timeout."""
    seed = redis.Redis(port=compose_nodes[0], password=PASSWORD)
    for port in compose_nodes[1:]:
        seed.cluster("MEET", "127.0.0.1", port, port + BUS_OFFSET)
    seed.close()

    def all_met() -> bool:
        node = redis.Redis(port=compose_nodes[-1], password=PASSWORD)
        try:
            info: Any = node.cluster("INFO")
            return int(info["cluster_known_nodes"]) == len(compose_nodes)
        finally:
            node.close()

    wait_until_sync(all_met, timeout_s=30, what="the six nodes to meet")
    formed = _form(compose_nodes)
    assert formed.returncode == 0, formed.stderr
    assert "formed: 3 primaries, 1 replica(s) each" in formed.stdout
    assert "cluster_state:ok" in formed.stdout
