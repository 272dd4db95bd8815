"""hiredis packs commands byte-for-byte as redis-py's own asyncio packer does."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from ridepulse.redis_client import HiredisPackingConnection

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"x"),
    ("GEOADD", "g", -122.419416, 37.774929, "d1", "-122.4", "37.7", "d2"),
    ("ZADD", "z", 1764300000000, "d1", 0.1, "d2", -3, "d3"),
    ("HSET", "h", "é", "ü", b"\x00\xff", bytearray(b"ba"), "m", memoryview(b"mv")),
    ("XADD", "s", "MAXLEN", "~", 100, "*", "data", b'{"pings": []}'),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_each_command_packs_like_redis_py(command: tuple[Any, ...]) -> None:
    ours, theirs = HiredisPackingConnection(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(
        bytes(c) for c in theirs.pack_command(*command)
    )


def test_a_pipeline_packs_like_redis_py() -> None:
    ours, theirs = HiredisPackingConnection(), Connection()
    assert b"".join(ours.pack_commands(COMMANDS)) == b"".join(
        bytes(c) for c in theirs.pack_commands(COMMANDS)
    )


@pytest.mark.parametrize("bad", [None, True, object(), ["list"]])
def test_an_argument_redis_cannot_take_is_a_data_error(bad: Any) -> None:
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", bad)
