"""Which errors are a Redis connection's passing trouble (retry) and which are ours (a bug)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ClusterError, DataError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from ridepulse.bus.faults import TRANSIENT_REPLIES, is_transient, raised_inside_redis_client
from ridepulse.cli_checks import redis_failed
from ridepulse.redis_client import connect
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "architecture.md"


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


@pytest.mark.parametrize(
    "reply",
    [
        "MISCONF Errors writing to the AOF file: No space left on device",
        "NOREPLICAS Not enough good replicas to write.",
        "UNBLOCKED force unblock from blocking operation, instance state changed "
        "(master -> replica?)",
    ],
)
def test_a_server_that_cannot_write_now_is_transient_alone_or_in_a_pipeline(reply: str) -> None:
    """A full disk, too few replicas, a role change: every consumer service died of these."""
    assert is_transient(ResponseError(reply))
    # redis-py rewrites a pipeline's failed command: the sync client, then the asyncio one
    command = "Command # 1 (SET rp:heartbeat:eta:eta-1 {...}) of pipeline caused error: "
    assert is_transient(ResponseError(command + reply))
    assert is_transient(ResponseError(command + repr((reply,))))
    assert not is_transient(ResponseError(command + "WRONGTYPE Operation against a key"))


def test_the_architecture_doc_names_every_transient_reply() -> None:
    row = next(
        line for line in ARCHITECTURE.read_text().splitlines() if line.startswith("| Redis blips")
    )
    missing = [code for code in sorted(TRANSIENT_REPLIES) if f"`{code}`" not in row]
    assert not missing, f"docs/architecture.md's 'Redis blips' row does not name {missing}"


def test_a_refused_command_is_not_called_unreachable() -> None:
    url = "redis://:pw@127.0.0.1:6379/0"
    refused = redis_failed(url, ResponseError("MISCONF Errors writing to the AOF file"))
    assert refused == (
        "Redis at redis://***@127.0.0.1:6379/0 refused the command: MISCONF Errors writing to "
        "the AOF file"
    )
    unreachable = redis_failed(url, RedisConnectionError("Connection refused."))
    assert unreachable == "cannot reach Redis at redis://***@127.0.0.1:6379/0: Connection refused."


@pytest.mark.parametrize(
    "message",
    [
        "TTL exhausted.",
        "Command # 2 (XRANGE k a b COUNT 1) of pipeline caused error: ('TTL exhausted.',)",
    ],
)
def test_a_cluster_client_out_of_redirects_is_transient_and_not_called_unreachable(
    message: str,
) -> None:
    """While a slot moved between primaries, redis-py's cluster client gave up following
    TRYAGAIN/ASK with ClusterError("TTL exhausted."): every consumer service exited "cannot
    reach Redis" (31 deaths in a 40 s migration) and handlers dead-lettered valid events."""
    error = ClusterError(message)
    assert is_transient(error)
    line = redis_failed("redis+cluster://:pw@127.0.0.1:7000/0", error)
    assert not line.startswith("cannot reach"), line
    assert "kept redirecting" in line and "slot moving between nodes" in line


async def test_a_cluster_client_that_finds_no_node_is_transient_and_its_other_errors_are_not() -> (
    None
):
    """redis-py's cluster client raises RedisClusterException, no RedisError, when no seed
    answers its slot-map read: a passing outage (every node restarting), which ended ingest's
    background loops for good. The class is also what it raises for our bugs."""
    client = connect(Settings(), f"redis+cluster://:pw@127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisClusterException) as raised:
        await client.initialize()
    assert "cannot be connected" in str(raised.value)
    assert is_transient(raised.value)
    assert not is_transient(RedisClusterException("Keys in request don't hash to the same slot"))
