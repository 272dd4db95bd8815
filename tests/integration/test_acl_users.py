"""Each service connects as its own ACL user with only what it needs (DESIGN §9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from ridepulse.acl import SERVICE_RULES
from ridepulse.redis_server import EmbeddedRedis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("acl")).start()
    yield embedded
    embedded.stop()


def _client(server: EmbeddedRedis, service: str) -> redis.Redis:
    return redis.Redis.from_url(server.url_for(service))


def test_every_service_has_its_own_working_user(server: EmbeddedRedis) -> None:
    for service in SERVICE_RULES:
        client = _client(server, service)
        assert client.ping() is True
        assert client.client_info()["user"] == service
        client.close()


def test_the_dashboard_user_can_read_but_not_write(server: EmbeddedRedis) -> None:
    writer, viewer = _client(server, "ingest"), _client(server, "dashboard")
    writer.xadd("rp:{sf}:rides", {b"k": b"v"})
    assert viewer.xlen("rp:{sf}:rides") == 1
    with pytest.raises(NoPermissionError):
        viewer.set("rp:{sf}:x:forged", "1")
    writer.close()
    viewer.close()


def test_service_users_cannot_reach_other_prefixes_or_administer_the_server(
    server: EmbeddedRedis,
) -> None:
    client = _client(server, "matching")
    with pytest.raises(NoPermissionError):
        client.get("other-app:key")
    with pytest.raises(NoPermissionError):
        client.flushall()
    with pytest.raises(NoPermissionError):
        client.config_set("appendonly", "no")
    client.close()


def test_passwords_survive_a_restart(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path).start()
    password = first.service_passwords["eta"]
    first.stop()
    second = EmbeddedRedis(tmp_path).start()
    try:
        assert second.service_passwords["eta"] == password
        client = redis.Redis.from_url(second.url_for("eta"))
        assert client.ping() is True
        client.close()
    finally:
        second.stop()
