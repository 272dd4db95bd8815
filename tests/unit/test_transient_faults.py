"""Which errors are a Redis connection's passing trouble (retry) and which are ours (a bug)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from ridepulse.bus.faults import is_transient, raised_inside_redis_client


async def test_a_transport_torn_down_inside_the_client_is_transient() -> None:
    # The exact failure seen while a cluster primary died: the connection's writer is gone.
    connection = Connection(host="127.0.0.1", port=1)
    with pytest.raises(AttributeError) as raised:
        await connection._send_packed_command([b"PING"])
    assert raised_inside_redis_client(raised.value)
    assert is_transient(raised.value)


def _our_bug(kind: type[Exception]) -> None:
    raise kind("our bug")


@pytest.mark.parametrize("kind", [AttributeError, RuntimeError])
def test_the_same_error_classes_from_our_own_code_are_not_transient(kind: type[Exception]) -> None:
    with pytest.raises(kind) as raised:
        _our_bug(kind)
    assert not raised_inside_redis_client(raised.value)
    assert not is_transient(raised.value)


def test_server_replies_and_connection_errors_keep_their_meaning() -> None:
    assert is_transient(RedisConnectionError("reset by peer"))
    assert is_transient(ResponseError("LOADING Valkey is loading the dataset in memory"))
    assert not is_transient(ResponseError("WRONGTYPE Operation against a key"))
    assert not is_transient(DataError("Invalid input of type: 'NoneType'"))
