"""The embedded server's port across starts of `ridepulse up` and `ridepulse redis`: the
previous one again when it is free, a new one otherwise."""

from __future__ import annotations

import socket
from pathlib import Path

from ridepulse.launcher import previous_port
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings


def _settings(data_dir: Path, port: int, api_port: int = 8000) -> Settings:
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "port").write_text(str(port))
    return Settings(data_dir=data_dir, api_port=api_port)


def test_a_free_previous_port_is_taken_again(tmp_path: Path) -> None:
    port = free_port()
    assert previous_port(_settings(tmp_path, port)) == port


def test_a_previous_port_something_listens_on_is_given_up(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        assert previous_port(_settings(tmp_path, other.getsockname()[1])) == 0


def test_a_previous_port_now_asked_for_by_an_http_service_is_given_up(tmp_path: Path) -> None:
    """`up --api-port P` checks P is free before the server starts: the server must not take it."""
    port = free_port()
    assert previous_port(_settings(tmp_path, port, api_port=port)) == 0
