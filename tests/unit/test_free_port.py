"""Ports for servers that bind a moment later: outside the range outgoing connections draw from."""

from __future__ import annotations

from ridepulse.redis_server import EPHEMERAL_RANGE, free_port


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)
