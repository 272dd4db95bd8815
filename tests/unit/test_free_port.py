"""Ports for servers that bind a moment later: outside the range outgoing connections draw from."""

from __future__ import annotations

from pathlib import Path

import pytest

from ridepulse import redis_server
from ridepulse.redis_server import EPHEMERAL_RANGE, free_port, reserve_ports


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)


def test_reserved_ports_are_never_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ridepulse up --api-port P`: its cluster nodes must not take P before ingest binds it.
    # A ten-port range with nine reserved leaves one port (or the fallback above the range).
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("1034 60999\n")
    monkeypatch.setattr(redis_server, "EPHEMERAL_RANGE", range_file)
    monkeypatch.setattr(redis_server, "_handed_out", set())
    reserved = list(range(1024, 1033))
    reserve_ports(*reserved)
    chosen = [redis_server.free_port() for _ in range(3)]
    assert not set(chosen) & set(reserved)
    assert len(set(chosen)) == 3
