"""Each service connects as its own ACL user with only what it needs (DESIGN §9,
docs/security.md): an allow-list of commands and the key patterns it owns.

Two tables drive the checks, so a new command is one line here and one in ridepulse/acl_grants.py:
`MUST_NOT` — what every (or one) service user must be refused (NOPERM), and `MUST` — samples
of what each service really sends, which must stay allowed. Both are checked with ACL DRYRUN
against the real server; tests/e2e additionally fails on any NOPERM the services meet."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from ridepulse.acl import SERVICE_GRANTS
from ridepulse.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration

SF = "rp:{sf}"
# Refused to every service user: server administration, destroying shared state, and
# scanning the keyspace.
EVERY_SERVICE_MUST_NOT: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "SET", "appendonly", "no"),
    ("SHUTDOWN",),
    ("DEBUG", "SLEEP", "0"),
    ("CLIENT", "KILL", "ID", "1"),
    ("CLIENT", "PAUSE", "100"),
    ("CLIENT", "LIST"),
    ("KEYS", "*"),
    ("SCRIPT", "FLUSH"),
    ("EVAL", "return 1", "0"),
    ("FUNCTION", "FLUSH"),
    ("ACL", "SETUSER", "mallory", "on", ">x", "+@all", "~*"),
    ("MONITOR",),
    ("DEL", f"{SF}:rides"),
    ("UNLINK", f"{SF}:rides"),
    ("RENAME", f"{SF}:rides", f"{SF}:gone"),
    ("XGROUP", "DESTROY", f"{SF}:rides", "matching"),
    ("XGROUP", "SETID", f"{SF}:rides", "matching", "$"),
    ("XDEL", f"{SF}:rides", "1-0"),
    # a stream is in its consumers' writes, but SET or EXPIRE would replace or time it out
    ("SET", f"{SF}:rides", "x"),
    ("EXPIRE", f"{SF}:rides", "1"),
    ("SET", f"{SF}:telemetry", "x"),
    ("EXPIRE", f"{SF}:telemetry", "1"),
    ("SET", f"{SF}:eta", "x"),
    ("SET", f"{SF}:surge", "x"),
    ("SET", "rp:health", "x"),
    ("EXPIRE", "rp:dead-letters", "1"),
    ("DEL", "rp:dead-letters"),
    ("DEL", "rp:heartbeat:someone-else:1"),
    ("GET", "other-app:key"),
    ("SET", "other-app:key", "1"),
    ("PUBLISH", "anything", "1"),
    ("SUBSCRIBE", "anything"),
    # no product code runs a transaction (every pipeline is transaction=False)
    ("WATCH", f"{SF}:ride:r1"),
    ("MULTI",),
    ("EXEC",),
    ("DISCARD",),
]
# Refused to one service: keys another service owns (this is how a poison entry gets in).
MUST_NOT: dict[str, list[tuple[str, ...]]] = {
    "ingest": [
        ("HSET", f"{SF}:surge:cells", "c", "9"),
        ("HSET", f"{SF}:eta:speeds", "c", "99"),
        ("XADD", f"{SF}:surge", "*", "k", "v"),
        ("XADD", "rp:dead-letters", "*", "k", "v"),
        ("SET", f"{SF}:done:matching:e1", "1"),
        ("XTRIM", f"{SF}:rides", "MAXLEN", "0"),
        # it heartbeats but runs no consumer group
        ("XPENDING", f"{SF}:rides", "matching"),
        ("XINFO", "STREAM", f"{SF}:telemetry"),
        # /readyz reads three INFO sections (ridepulse/write_refusals.py), nothing more: CONFIG
        # GET would show the server's passwords, INFO clients every connection's address
        ("CONFIG", "GET", "min-replicas-to-write"),
        ("INFO", "clients"),
        ("INFO",),
        # the keys of a market's requests carry its tag; untagged ones would sit on any shard
        ("INCRBY", "rp:rate:rider:r1:quotes:29000000", "1"),
        ("SET", "rp:idem-claim:r1:key-1", "sf|abc", "NX", "EX", "10"),
        ("SET", "rp:driver-market:d1", "sf", "EX", "600"),
        # DEL reaches a driver's market record (a driver leaving a market) and nothing else
        ("DEL", f"{SF}:driver:d1"),
        ("DEL", f"{SF}:rides"),
    ],
    "matching": [
        ("XADD", f"{SF}:telemetry", "*", "k", "v"),
        ("HSET", f"{SF}:surge:cells", "c", "9"),
        ("SET", f"{SF}:idem:r1:k1", "x"),
        ("XTRIM", f"{SF}:rides", "MAXLEN", "0"),
    ],
    "matching-geo": [
        ("XADD", f"{SF}:rides", "*", "k", "v"),
        ("HSET", f"{SF}:ride:r1", "status", "completed"),
        ("EVALSHA", "0" * 40, "1", f"{SF}:rides"),  # a script may only touch its own keys
        # update_positions.lua runs HMGET, TIME, HSET, ZADD, GEOADD; dropping stale drivers and
        # the nearby search (nearby_available.lua) run in matching and ingest
        ("ZMSCORE", f"{SF}:drivers:seen", "d1"),
        ("ZRANGEBYSCORE", f"{SF}:drivers:seen", "-inf", "1"),
        ("ZREM", f"{SF}:drivers:geo", "d1"),
    ],
    "eta": [
        ("XADD", f"{SF}:telemetry", "*", "k", "v"),
        ("HSET", f"{SF}:driver:d1", "status", "available"),
        ("HSET", f"{SF}:surge:cells", "c", "9"),
        ("DEL", f"{SF}:lease:pricing"),  # another service's lease
        ("DEL", f"{SF}:lease:eta:fence"),  # the fence counter only grows
        ("INCR", f"{SF}:eta:speeds"),
    ],
    "pricing": [
        ("XADD", f"{SF}:telemetry", "*", "k", "v"),
        ("XRANGE", f"{SF}:telemetry", "-", "+"),  # supply comes from the geo index
        ("HSET", f"{SF}:ride:r1", "fare", "0"),
        ("HSET", f"{SF}:eta:speeds", "c", "99"),
        ("XGROUP", "DESTROY", f"{SF}:telemetry", "matching.geo"),
        ("DEL", f"{SF}:lease:eta"),  # another service's lease
        ("DEL", f"{SF}:lease:pricing:fence"),  # the fence counter only grows
        ("INCR", f"{SF}:surge:cells"),
        ("SET", f"{SF}:x:pricing:scratch", "1"),  # no scratch keys
        ("HSET", f"{SF}:x:pricing", "c", "1"),
    ],
    "janitor": [
        ("XADD", f"{SF}:telemetry", "*", "k", "v"),
        ("HSET", f"{SF}:surge:cells", "c", "9"),
        ("HSET", f"{SF}:eta:speeds", "c", "99"),
        ("DEL", f"{SF}:ride:r1"),
        ("SET", f"{SF}:idem:r1:k1", "x"),
        ("XREADGROUP", "GROUP", "g", "c", "STREAMS", f"{SF}:rides", ">"),
        ("XINFO", "STREAM", f"{SF}:rides"),
    ],
    "dashboard": [
        ("SET", f"{SF}:x:forged", "1"),
        ("XADD", f"{SF}:rides", "*", "k", "v"),
        ("HSET", f"{SF}:ride:r1", "status", "x"),
        ("EVALSHA", "0" * 40, "0"),
        ("XREADGROUP", "GROUP", "g", "c", "STREAMS", f"{SF}:rides", ">"),
        ("DEL", "rp:heartbeat:dashboard:1"),
        # it sends XREAD, XREVRANGE, XLEN, XINFO, GET, HGETALL, ZRANGE, SMEMBERS only
        ("HGET", f"{SF}:drivers:pos", "d1"),
        ("HMGET", f"{SF}:drivers:pos", "d1"),
        ("EXISTS", f"{SF}:rides"),
        ("XRANGE", f"{SF}:rides", "-", "+"),
    ],
}
# Samples of what each service really sends (read from its code): these must stay allowed.
CONSUMER_SAMPLES: list[tuple[str, ...]] = [
    ("PING",),
    ("CLIENT", "SETINFO", "LIB-NAME", "redis-py"),
    ("SET", "rp:heartbeat:{svc}:{svc}-1", "{}", "EX", "10"),
    ("SADD", "rp:heartbeats", "rp:heartbeat:{svc}:{svc}-1"),
    ("XADD", "rp:health", "MAXLEN", "~", "1000", "*", "k", "v"),
    ("DEL", "rp:heartbeat:{svc}:{svc}-1"),
    ("SREM", "rp:heartbeats", "rp:heartbeat:{svc}:{svc}-1"),
]
BUS_SAMPLES: list[tuple[str, ...]] = [
    ("XGROUP", "CREATE", "{stream}", "{group}", "$", "MKSTREAM"),
    ("XREADGROUP", "GROUP", "{group}", "c1", "COUNT", "10", "STREAMS", "{stream}", ">"),
    ("XACK", "{stream}", "{group}", "1-0"),
    ("XPENDING", "{stream}", "{group}"),
    ("XCLAIM", "{stream}", "{group}", "c1", "0", "1-0"),
    ("XAUTOCLAIM", "{stream}", "{group}", "c1", "0", "0-0"),
    ("XINFO", "GROUPS", "{stream}"),
    ("XADD", "rp:dead-letters", "MAXLEN", "~", "10000", "*", "k", "v"),
]
# Granted once for an idempotency guard no product code uses (tests/support/idempotency.py, a
# test helper run as the operator): no consumer group keeps guard keys.
BUS_MUST_NOT: list[tuple[str, ...]] = [
    ("SET", SF + ":done:{group}:e1", "1", "EX", "60"),
    ("EXISTS", SF + ":done:{group}:e1"),
]
RIDE_STEP_SAMPLES: list[tuple[str, ...]] = [
    ("EVALSHA", "0" * 40, "2", f"{SF}:ride:r1", f"{SF}:rides"),
    ("SCRIPT", "LOAD", "return 1"),
    ("HSET", f"{SF}:ride:r1", "status", "requested"),
    ("XADD", f"{SF}:rides", "*", "k", "v"),
    ("ZADD", f"{SF}:rides:open", "1", "r1"),
    ("HINCRBY", f"{SF}:rides:counts", "requested", "1"),
    ("HSET", f"{SF}:driver:d1", "status", "available"),
    ("GEOADD", f"{SF}:drivers:geo", "-122.4", "37.7", "d1"),
]


def _lease_samples(service: str) -> list[tuple[str, ...]]:
    """What the lease keeper (ridepulse.leases) runs, on the service's own lease keys."""
    lease, members = f"{SF}:lease:{service}", f"rp:lease-members:{service}"
    return [
        ("GET", lease),
        ("SET", lease, "1:x", "PX", "5000"),
        ("INCR", f"{lease}:fence"),
        ("PEXPIRE", lease, "5000"),
        ("DEL", lease),
        ("ZADD", members, "1", "x"),
        ("ZREMRANGEBYSCORE", members, "-inf", "1"),
        ("ZCARD", members),
        ("ZREM", members, "x"),
    ]


MUST: dict[str, list[tuple[str, ...]]] = {
    "ingest": [
        *RIDE_STEP_SAMPLES,
        ("XADD", f"{SF}:telemetry", "MAXLEN", "~", "100000", "*", "k", "v"),
        # a market request touches its slot only (integration/test_market_request_keys.py)
        ("INCRBY", f"{SF}:rate:rider:r1:quotes:29000000", "1"),
        ("EXPIRE", f"{SF}:rate:rider:r1:quotes:29000000", "120"),
        ("SET", f"{SF}:driver-home:d1", "1700000000000", "EX", "600"),
        ("GET", f"{SF}:driver-home:d1"),
        ("DEL", f"{SF}:driver-home:d1"),
        ("XREAD", "COUNT", "500", "STREAMS", f"{SF}:rides", f"{SF}:eta", "$", "$"),
        ("XINFO", "GROUPS", f"{SF}:telemetry"),
        ("XRANGE", f"{SF}:telemetry", "-", "+", "COUNT", "1"),
        ("XLEN", f"{SF}:telemetry"),
        ("TIME",),
        ("HMGET", f"{SF}:eta:speeds", "c1"),
        ("HGET", f"{SF}:surge:cells", "c1"),
        ("GEOSEARCH", f"{SF}:drivers:geo", "FROMLONLAT", "-122.4", "37.7", "BYRADIUS", "1", "km"),
        ("ZMSCORE", f"{SF}:drivers:seen", "d1"),  # a quote's driver search checks freshness
        ("SET", f"{SF}:quote:q1", "{}", "EX", "120"),
        ("GET", f"{SF}:idem:r1:k1"),
        ("WAITAOF", "1", "0", "100"),
        ("INFO", "persistence"),
        ("INFO", "memory"),
        ("INFO", "replication"),
    ],
    "matching": [
        *RIDE_STEP_SAMPLES,
        ("ZRANGEBYSCORE", f"{SF}:offers:due", "-inf", "1", "LIMIT", "0", "100"),
        ("ZREM", f"{SF}:drivers:seen", "d1"),
        ("ZMSCORE", f"{SF}:drivers:seen", "d1"),
        ("HMGET", f"{SF}:drivers:status", "d1"),
    ],
    "matching-geo": [
        ("TIME",),
        ("HSET", f"{SF}:drivers:pos", "d1", "x"),
        ("ZADD", f"{SF}:drivers:seen", "1", "d1"),
        ("GEOADD", f"{SF}:drivers:geo", "-122.4", "37.7", "d1"),
        ("HMGET", f"{SF}:drivers:status", "d1"),
        ("EVALSHA", "0" * 40, "2", f"{SF}:drivers:seen", f"{SF}:drivers:pos"),
    ],
    "eta": [
        ("HSET", f"{SF}:eta:speeds", "c1", "9.5"),
        ("HGET", f"{SF}:drivers:pos", "d1"),
        ("ZRANGE", f"{SF}:rides:active", "0", "-1"),
        ("HGETALL", f"{SF}:ride:r1"),
        ("HSET", f"{SF}:ride:r1", "pickup_eta_s", "60"),
        ("XADD", f"{SF}:eta", "*", "k", "v"),
        # market leases (RIDEPULSE_LEASES=1): the fenced set_eta and speeds writes, the keeper
        ("EVALSHA", "0" * 40, "2", f"{SF}:ride:r1", f"{SF}:lease:eta"),
        ("EVALSHA", "0" * 40, "2", f"{SF}:lease:eta", f"{SF}:eta:speeds"),
        *_lease_samples("eta"),
    ],
    "pricing": [
        ("HSET", f"{SF}:surge:cells", "c1", "1.5"),
        ("HDEL", f"{SF}:surge:cells", "c1"),
        ("XRANGE", f"{SF}:rides", "-", "+", "COUNT", "100"),
        ("ZRANGE", f"{SF}:drivers:geo", "0", "-1"),
        ("GEOPOS", f"{SF}:drivers:geo", "d1"),
        ("XADD", f"{SF}:surge", "*", "k", "v"),
        # market leases (RIDEPULSE_LEASES=1): the scripts of ridepulse.leases and what they run
        ("EVALSHA", "0" * 40, "2", f"{SF}:lease:pricing", f"{SF}:surge:cells"),
        ("SCRIPT", "LOAD", "return 1"),
        *_lease_samples("pricing"),
    ],
    "janitor": [
        *RIDE_STEP_SAMPLES,
        ("TIME",),
        ("SCAN", "0", "MATCH", f"{SF}:rider:*:rides", "COUNT", "1000"),
        ("SMEMBERS", f"{SF}:rider:r1:rides"),
        ("SREM", f"{SF}:rider:r1:rides", "x"),
        ("SCAN", "0", "MATCH", f"{SF}:rider:*:open", "COUNT", "1000"),
        ("SMEMBERS", f"{SF}:rider:r1:open"),
        ("ZSCORE", f"{SF}:rides:active", "r1"),
        ("SREM", f"{SF}:rider:r1:open", "r1"),
        ("ZSCORE", f"{SF}:drivers:seen", "d1"),
        ("DEL", f"{SF}:driver:d1"),
        ("EXISTS", "rp:heartbeat:matching:matching-1"),
        ("SREM", "rp:heartbeats", "rp:heartbeat:matching:matching-1"),
        ("EXISTS", f"{SF}:rides"),
        ("XINFO", "GROUPS", f"{SF}:rides"),
        ("XPENDING", f"{SF}:rides", "matching"),
        ("XTRIM", f"{SF}:rides", "MINID", "~", "1-0"),
        ("XTRIM", f"{SF}:telemetry", "MINID", "~", "1-0"),
        ("XLEN", f"{SF}:telemetry"),
        ("XRANGE", f"{SF}:telemetry", "(1-0", "+", "COUNT", "1"),
        # the heard-until stamp and unheard stretches (ridepulse/heard_until.py)
        ("GET", f"{SF}:drivers:heard"),
        ("SET", f"{SF}:drivers:heard", "1"),
        ("ZADD", f"{SF}:drivers:unheard", "2", "1:2"),
        ("ZRANGEBYSCORE", f"{SF}:drivers:unheard", "-inf", "+inf"),
        ("ZREMRANGEBYSCORE", f"{SF}:drivers:unheard", "-inf", "(1"),
    ],
    "dashboard": [
        ("PING",),
        ("XREAD", "COUNT", "100", "STREAMS", f"{SF}:rides", "$"),
        ("XREVRANGE", f"{SF}:rides", "+", "-", "COUNT", "25"),
        ("XLEN", "rp:dead-letters"),
        ("XINFO", "STREAM", f"{SF}:telemetry"),
        ("XINFO", "GROUPS", f"{SF}:rides"),
        ("HGETALL", f"{SF}:drivers:pos"),
        ("ZRANGE", f"{SF}:rides:active", "0", "-1"),
        ("SMEMBERS", "rp:heartbeats"),
        ("GET", "rp:heartbeat:matching:matching-1"),
    ],
}
# The groups (and the stream each reads) of the consumer services, for BUS_SAMPLES.
GROUPS: dict[str, list[tuple[str, str]]] = {
    "matching": [("matching", f"{SF}:rides")],
    "matching-geo": [("matching.geo", f"{SF}:telemetry")],
    "eta": [("eta", f"{SF}:rides"), ("eta.speeds", f"{SF}:telemetry")],
    "pricing": [("pricing", f"{SF}:rides")],
}
HEARTBEATING = ("ingest", "matching", "matching-geo", "eta", "pricing", "janitor")
# Only the janitor scans (riders' ride sets): SCAN names no key, so no pattern narrows it.
for _service, _refused in MUST_NOT.items():
    if _service != "janitor":
        _refused.append(("SCAN", "0"))


def _dryrun(operator: redis.Redis, user: str, command: tuple[str, ...]) -> str:
    reply = operator.execute_command("ACL", "DRYRUN", user, *command)  # type: ignore[no-untyped-call]
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _refused_samples(service: str) -> list[tuple[str, ...]]:
    samples = [*EVERY_SERVICE_MUST_NOT, *MUST_NOT.get(service, [])]
    for group, _ in GROUPS.get(service, []):
        samples += [tuple(a.replace("{group}", group) for a in c) for c in BUS_MUST_NOT]
    return samples


def _allowed_samples(service: str) -> list[tuple[str, ...]]:
    samples = list(MUST.get(service, []))
    if service in HEARTBEATING:
        samples += [tuple(a.replace("{svc}", service) for a in c) for c in CONSUMER_SAMPLES]
    for group, stream in GROUPS.get(service, []):
        samples += [
            tuple(a.replace("{stream}", stream).replace("{group}", group) for a in c)
            for c in BUS_SAMPLES
        ]
    return samples


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("acl")).start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def operator(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def _client(server: EmbeddedRedis, service: str) -> redis.Redis:
    return redis.Redis.from_url(server.url_for(service))


def test_every_service_has_its_own_working_user(server: EmbeddedRedis) -> None:
    for service in SERVICE_GRANTS:
        client = _client(server, service)
        assert client.ping() is True
        client.close()
    names = set(redis.Redis.from_url(server.url, decode_responses=True).acl_users())
    assert names == {"default", *SERVICE_GRANTS}


@pytest.mark.parametrize("service", sorted(SERVICE_GRANTS))
def test_a_service_user_is_refused_what_it_must_not_run(
    operator: redis.Redis, service: str
) -> None:
    allowed = [
        " ".join(command)
        for command in _refused_samples(service)
        if _dryrun(operator, service, command) == "OK"
    ]
    assert not allowed, f"{service} may run: {allowed}"


@pytest.mark.parametrize("service", sorted(SERVICE_GRANTS))
def test_a_service_user_may_run_what_its_code_sends(operator: redis.Redis, service: str) -> None:
    samples = _allowed_samples(service)
    assert samples, f"no allowed-command samples for {service}: add them to MUST"
    refused = {
        " ".join(command): reply
        for command in samples
        if (reply := _dryrun(operator, service, command)) != "OK"
    }
    assert not refused, f"{service} is refused what it sends: {refused}"


def test_the_dashboard_user_can_read_but_not_write(server: EmbeddedRedis) -> None:
    writer, viewer = _client(server, "ingest"), _client(server, "dashboard")
    writer.xadd(f"{SF}:telemetry", {b"k": b"v"})
    assert viewer.xlen(f"{SF}:telemetry") == 1
    with pytest.raises(NoPermissionError):
        viewer.set(f"{SF}:x:forged", "1")
    with pytest.raises(NoPermissionError):
        viewer.execute_command("CLIENT", "KILL", "ID", "1")  # type: ignore[no-untyped-call]
    writer.close()
    viewer.close()


def test_a_service_user_really_gets_noperm_not_just_in_dryrun(
    server: EmbeddedRedis, operator: redis.Redis
) -> None:
    """And the server's ACL LOG records it: the e2e suite fails on any entry there."""
    operator.acl_log_reset()
    client = _client(server, "matching")
    with pytest.raises(NoPermissionError):
        client.delete(f"{SF}:rides")
    with pytest.raises(NoPermissionError):
        client.script_flush()
    with pytest.raises(NoPermissionError):
        client.flushall()
    client.close()
    logged = {(e["username"], e["object"]) for e in operator.acl_log()}
    assert {("matching", f"{SF}:rides"), ("matching", "flushall")} <= logged, logged


@pytest.mark.parametrize(
    ("what", "lua"),
    [
        ("wiping the server", "return redis.call('FLUSHALL')"),
        ("another service's key", f"return redis.call('HSET', '{SF}:surge:cells', 'c', '9')"),
        ("the keyspace", "return redis.call('KEYS', '*')"),
    ],
)
def test_a_script_a_service_user_loads_runs_under_that_users_grant(
    server: EmbeddedRedis, what: str, lua: str
) -> None:
    """docs/security.md: `SCRIPT LOAD` is granted (redis-py reloads a script the server lost),
    so a service user can run Lua of its own; what that Lua calls is still checked against
    the user's grant. (What no grant bounds, a loop's CPU time, the doc says too.)"""
    client = _client(server, "ingest")  # the service that faces the internet
    try:
        sha = client.script_load(lua)
        keys = [f"{SF}:surge:cells"] if "HSET" in lua else []
        with pytest.raises(redis.ResponseError, match=r"(?i)noperm|no permissions"):
            client.evalsha(sha, len(keys), *keys)
    finally:
        client.close()


def test_the_acl_file_holds_password_hashes_only(server: EmbeddedRedis) -> None:
    text = (server.data_dir / "users.acl").read_text()
    for user, password in {"default": server.password, **server.service_passwords}.items():
        assert password not in text, f"{user}'s password is in the ACL file in the clear"
        line = next(line for line in text.splitlines() if line.startswith(f"user {user} "))
        assert f" #{hashlib.sha256(password.encode()).hexdigest()} " in line
        assert " >" not in line


def test_secret_files_are_private_and_the_data_dir_is_0700(server: EmbeddedRedis) -> None:
    for name in ("users.acl", "acl.passwords", "redis.password"):
        mode = stat.S_IMODE((server.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700


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
