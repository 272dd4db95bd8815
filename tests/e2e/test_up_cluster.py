"""`ridepulse up --cluster`: the whole platform on a local Valkey Cluster it starts itself
(3 primaries, 1 replica each), a ride through every service, and nothing left running after."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import FAST_CLOCKS
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import RIDEPULSE, Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_up_with_cluster_starts_its_cluster_serves_a_ride_and_stops_every_node(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "city"
    platform = Platform(
        data_dir, "--no-sim", "--cluster", "--primaries", "3", "--replicas", "1", env=FAST_CLOCKS
    )
    city: City | None = None
    try:
        platform.wait_up(timeout_s=180)
        city = City(platform)
        city.wait_ready(timeout_s=60)
        url = platform.redis_url()
        assert url.startswith("redis+cluster://"), url
        client: Any = connect_sync(url)
        try:
            on_cluster = isinstance(client, redis.RedisCluster)  # not narrowed: redis-py is untyped
            assert on_cluster
            assert len(client.get_primaries()) == 3
            assert len(client.get_replicas()) == 3
            ports = [node.port for node in client.get_nodes()]
        finally:
            client.close()

        driver = "cluster-driver"
        city.go_available(driver, *offset(DOWNTOWN, 300, 0))
        response = city.request_ride("rider-c", DOWNTOWN, offset(DOWNTOWN, -2500, 0))
        assert response.status_code == 202, response.text
        ride_id = response.json()["ride_id"]
        city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="an offer")
        accepted = city.act(driver, ride_id, "accept")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "matched"

        status = subprocess.run(
            [RIDEPULSE, "status"],
            env={**os.environ, "RIDEPULSE_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert "matching" in status.stdout
    finally:
        if city is not None:
            city.close()
        code = platform.stop()
    assert code == 0, f"ridepulse up exited {code}:\n{platform.text()[-2000:]}"
    assert not (data_dir / "redis.url").exists(), "the URL file outlived the cluster"
    wait_until_sync(
        lambda: not any(_answers(port) for port in ports),
        timeout_s=30,
        what="every cluster node to stop with the platform",
    )
