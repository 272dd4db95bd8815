"""What INFO says of a server that refuses every write (`ridepulse status` names it first)."""

from __future__ import annotations

from redis.exceptions import ConnectionError, OutOfMemoryError, ResponseError

from ridepulse.write_refusals import (
    aof_problem,
    memory_problem,
    persistence_problem,
    refusal_reason,
    replicas_problem,
)

HEALTHY = {"aof_enabled": 1, "aof_last_write_status": "ok", "rdb_last_bgsave_status": "ok"}


def test_a_failed_aof_write_is_named_with_what_to_do() -> None:
    """What `ridepulse up` meets on a full disk: its AOF write fails, every write gets MISCONF."""
    full_disk = {**HEALTHY, "aof_last_write_status": "err"}
    assert persistence_problem(" 127.0.0.1:7000", full_disk, False) == (
        "Redis 127.0.0.1:7000 cannot write its AOF: it refuses every write (MISCONF), so ride "
        "requests and pings get 503; free disk space under its data dir (its log says why)"
    )


def test_a_failed_snapshot_counts_only_where_it_stops_writes() -> None:
    failed = {**HEALTHY, "aof_enabled": 0, "rdb_last_bgsave_status": "err"}
    problem = persistence_problem("", failed, True)
    assert problem is not None and problem.startswith("Redis failed its last RDB snapshot: ")
    # no save points, or stop-writes-on-bgsave-error off: the server still takes writes
    assert persistence_problem("", failed, False) is None


def test_a_server_writing_to_disk_or_with_its_aof_off_is_not_a_problem() -> None:
    assert persistence_problem("", HEALTHY, True) is None
    stale = {**HEALTHY, "aof_enabled": 0, "aof_last_write_status": "err"}  # AOF since turned off
    assert persistence_problem("", stale, False) is None


def test_a_server_past_its_maxmemory_is_named() -> None:
    assert memory_problem("", {"used_memory": 10, "maxmemory": 0}) is None
    assert memory_problem("", {"used_memory": 10, "maxmemory": 100}) is None
    problem = memory_problem("", {"used_memory": 100, "maxmemory": 100})
    assert problem is not None and problem.startswith("Redis is at its maxmemory (100 of 100")


def test_a_primary_short_of_its_good_replicas_is_named() -> None:
    assert replicas_problem("", {"connected_slaves": 0}, 0) is None  # no minimum set
    # min-replicas-max-lag 0: the rule is off, INFO has no count and writes go through
    assert replicas_problem("", {"connected_slaves": 0}, 1) is None
    assert replicas_problem("", {"min_slaves_good_slaves": 1}, 1) is None
    problem = replicas_problem(" 127.0.0.1:7001", {"min_slaves_good_slaves": 1}, 2)
    assert problem is not None and problem.startswith(
        "Redis 127.0.0.1:7001 has 1 good replica(s) of the 2 its min-replicas-to-write asks for"
    )


def test_an_aof_that_is_off_is_named_only_while_durable_writes_are_on() -> None:
    aof_off = {**HEALTHY, "aof_enabled": 0}
    assert aof_problem("", HEALTHY, True) is None
    assert aof_problem("", aof_off, False) is None  # RIDEPULSE_DURABLE_WRITES=false: by design
    problem = aof_problem(" 127.0.0.1:7000", aof_off, True)
    assert problem is not None and problem.startswith(
        "Redis 127.0.0.1:7000 has its AOF off (appendonly no) while RIDEPULSE_DURABLE_WRITES is on"
    ), problem
    assert "RIDEPULSE_DURABLE_WRITES=false" in problem and "appendonly yes" in problem


def test_a_refused_write_is_told_by_its_reply_inside_a_pipeline_too() -> None:
    pipeline_mark = "Command # 1 (SET k v) of pipeline caused error: "
    assert refusal_reason(OutOfMemoryError("command not allowed")) == "memory"
    assert refusal_reason(ResponseError("MISCONF Errors writing to the AOF file")) == "disk"
    assert refusal_reason(ResponseError(pipeline_mark + "NOREPLICAS Not enough")) == "replicas"
    assert refusal_reason(ResponseError("WRONGTYPE Operation against a key")) is None
    assert refusal_reason(ConnectionError("gone")) is None
