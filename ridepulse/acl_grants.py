"""What each Redis ACL user may run, and on which keys: one `Grant` per service user in
`SERVICE_GRANTS` (docs/security.md has the same table in prose).

To let a service send a new command, add it to that service's `commands` (or to a shared tuple
such as `BUS_CONSUMER`), then add a sample to `MUST` in tests/integration/test_acl_users.py
(and, if it is one no service may run, take it out of `EVERY_SERVICE_MUST_NOT`). A command on
some keys only is a `scoped` entry, e.g. `("del", ("{*}:driver:*",))` lets a user delete driver
hashes and nothing else. Key patterns are written after the key prefix (`rp:`): `{*}:rides`
is every market's ride stream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grant:
    """What one service user may run, and on which keys (patterns after `<prefix>:`)."""

    commands: tuple[str, ...]  # lower case; `xgroup|create` allows one subcommand only
    reads: tuple[str, ...] = ()  # %R~ patterns
    writes: tuple[str, ...] = ()  # %W~ patterns; a read-modify-write key is in both
    # Streams it may XADD to. Consuming a stream needs write access to it (XREADGROUP, XACK
    # move the group), so XADD is granted apart: a consumer of telemetry cannot forge pings.
    appends: tuple[str, ...] = ()
    # A command allowed only on these keys, on top of the above: e.g. DEL of the service's
    # own heartbeat key, never of a stream.
    scoped: tuple[tuple[str, tuple[str, ...]], ...] = ()


# What every client library sends on connect (redis-py: HELLO/AUTH, CLIENT SETINFO), its
# health check (PING), and what a cluster client needs to find the slots.
CONNECTION = (
    "auth",
    "hello",
    "ping",
    "client|setinfo",
    "client|setname",
    "client|getname",
    "client|id",
    "cluster|slots",
    "cluster|shards",
    "cluster|nodes",
    "command",
    "asking",
    "readonly",
)
# The service heartbeat (ridepulse/bus/heartbeat.py): its key, the set of heartbeat keys, the
# health stream. The lag and pending counts it reports of a consumer's groups (XINFO, XPENDING)
# are in BUS_CONSUMER: ingest and the janitor heartbeat with no group.
HEARTBEAT = ("set", "sadd", "srem")
# The consumer-group runtime (ridepulse/bus/consumer.py, deadletter.py, heartbeat.py's lag). No
# transaction and no idempotency guard keys: every handler's effect is a version-checked Lua
# step or an idempotent write (tests/support/idempotency.py, a test helper, runs as the operator).
BUS_CONSUMER = (
    "xreadgroup",
    "xack",
    "xgroup|create",
    "xpending",
    "xclaim",
    "xautoclaim",
    "xinfo|groups",
    "xinfo|stream",
    "xlen",  # heartbeat.py's lag: the backlog still in the stream (ridepulse/bus/backlog.py)
    # the runtime: XRANGE confirms a claimed id is gone before counting it lost; the reap script
    # (EVALSHA) removes consumers with nothing pending, checked and deleted atomically
    "xrange",
    "xinfo|consumers",
    "xgroup|delconsumer",
    "evalsha",
    "script|load",
    "script|exists",
)
# redis-py runs scripts as EVALSHA with a SCRIPT LOAD fallback (SCRIPT EXISTS in pipelines).
# A user may load any script, but every command inside runs under that user's own grant.
SCRIPTS = ("evalsha", "script|load", "script|exists")
# The commands inside the ride step scripts (ridepulse/rides/*.lua).
RIDE_STEP_COMMANDS = (
    "exists",
    "expire",
    "geoadd",
    "get",
    "hdel",
    "hget",
    "hgetall",
    "hincrby",
    "hmget",
    "hset",
    "sadd",
    "set",
    "sismember",
    "smembers",  # the request step prunes the rider's open rides
    "srem",
    "time",
    "zadd",
    "zrem",
    "zscore",
)
# The keys the ride step scripts change: projections, the ride stream, the indexes they keep.
RIDE_STEP_KEYS = (
    "{*}:rides",
    "{*}:ride:*",
    "{*}:applied:ride:*",
    "{*}:rides:active",
    "{*}:rides:open",
    "{*}:offers:due",
    "{*}:rides:counts",
    "{*}:drivers:status",
    "{*}:drivers:geo",
    "{*}:drivers:pos",
    "{*}:driver:*",
)
DEAD_LETTERS = ("dead-letters",)
# Every stream. A consumer needs write access to the streams it reads (XREADGROUP and XACK move
# its group), so they sit in its `writes`; but a command that replaces or times out a key of
# any type must never reach one: `SET rp:{sf}:rides x` wipes the ride stream as surely as DEL.
STREAMS = ("{*}:rides", "{*}:telemetry", "{*}:eta", "{*}:surge", "health", *DEAD_LETTERS)
OVERWRITES = ("set", "expire")  # granted on the user's writes minus STREAMS (acl.grant_rules)


def _heartbeat_keys(service: str) -> tuple[str, ...]:
    return (f"heartbeat:{service}:*", "heartbeats")


def _own_heartbeat(service: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A stopping service deletes its heartbeat key: DEL there, and nowhere else."""
    return (("del", (f"heartbeat:{service}:*",)),)


# Market leases (ridepulse.leases, RIDEPULSE_LEASES=1): the acquire/release/fenced-write
# scripts run by EVALSHA (the commands inside them are checked against the same user), so the
# lease keys are in the user's patterns, and the commands the scripts and the keeper run are
# each allowed on the lease keys only: SET on the surge hash stays refused, DEL reaches the
# lease but never its fence counter (which must only grow).
def _lease_keys(service: str) -> tuple[str, ...]:
    return (f"{{*}}:lease:{service}", f"{{*}}:lease:{service}:fence", f"lease-members:{service}")


def _lease_scoped(service: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    lease, fence, members = _lease_keys(service)
    return (
        ("get", (lease,)),
        ("set", (lease,)),
        ("pexpire", (lease,)),
        ("del", (lease,)),
        ("incr", (fence,)),
        ("zadd", (members,)),
        ("zremrangebyscore", (members,)),
        ("zcard", (members,)),
        ("zrem", (members,)),
    )


def _unique(*parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for part in parts for item in part))


SERVICE_GRANTS: dict[str, Grant] = {
    # The public API: appends telemetry, runs rider and driver steps, answers reads and quotes.
    "ingest": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            SCRIPTS,
            RIDE_STEP_COMMANDS,
            # XINFO GROUPS and CONSUMERS, XLEN, XRANGE: the shedding groups' backlog (backlog.py)
            ("xread", "xrange", "xinfo|groups", "xinfo|consumers", "xlen", "geosearch", "time"),
            ("zmscore",),  # a quote's driver search (ridepulse/nearby_available.lua): freshness
            ("hvals",),  # a quote's bound on speeds: the fastest in the market (ingest/quotes.py)
            (
                "waitaof",
                "wait",
            ),  # ride requests are durable (and replicated if asked) before the 202
            ("incrby", "expire", "hmget"),  # per-rider minute counters; idempotency records
            # whether Redis refuses writes, for /readyz (ridepulse/write_refusals.py): these
            # INFO sections only, never CONFIG (it would read the server's passwords)
            ("info|persistence", "info|memory", "info|replication"),
        ),
        reads=_unique(
            RIDE_STEP_KEYS,
            (
                "{*}:telemetry",
                "{*}:eta",
                "{*}:eta:speeds",
                "{*}:surge:cells",
                "{*}:quote:*",
                "{*}:idem:*",
                "{*}:rider:*",
                "{*}:drivers:seen",  # accept checks freshness on the server clock
                "{*}:rate:rider:*",  # per-rider minute counters, in the request's market
                "{*}:driver-home:*",  # each driver's market, with several (ingest/driver_homes.py)
            ),
        ),
        writes=_unique(
            RIDE_STEP_KEYS,
            ("{*}:telemetry", "{*}:quote:*", "{*}:idem:*", "{*}:rider:*", "{*}:drivers:seen"),
            ("{*}:rate:rider:*", "{*}:driver-home:*"),
            _heartbeat_keys("ingest"),
        ),
        appends=("{*}:telemetry", "{*}:rides", "health"),
        # a driver that moved market leaves the old one (ingest/market_moves.py)
        scoped=(*_own_heartbeat("ingest"), ("del", ("{*}:driver-home:*",))),
    ),
    # Offers, re-offers and expiry of ride requests (group `matching` on the ride streams).
    "matching": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            BUS_CONSUMER,
            SCRIPTS,
            RIDE_STEP_COMMANDS,
            ("zrangebyscore", "zmscore", "geosearch"),
        ),
        reads=_unique(RIDE_STEP_KEYS, ("{*}:drivers:seen", "{*}:eta:speeds")),
        writes=_unique(
            RIDE_STEP_KEYS,
            ("{*}:drivers:seen",),
            DEAD_LETTERS,
            _heartbeat_keys("matching"),
        ),
        appends=("{*}:rides", *DEAD_LETTERS, "health"),
        scoped=_own_heartbeat("matching"),
    ),
    # The available-driver geo index from telemetry (group `matching.geo`).
    "matching-geo": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            BUS_CONSUMER,
            SCRIPTS,
            ("hmget", "hset", "zadd", "geoadd", "time"),  # update_positions.lua
        ),
        # update_positions.lua takes seen, pos, status and geo as KEYS: a key handed to a
        # script needs read and write access, whatever the script does with it.
        reads=(
            "{*}:telemetry",
            "{*}:drivers:seen",
            "{*}:drivers:pos",
            "{*}:drivers:status",
            "{*}:drivers:geo",
        ),
        writes=_unique(
            (
                "{*}:telemetry",
                "{*}:drivers:seen",
                "{*}:drivers:pos",
                "{*}:drivers:status",
                "{*}:drivers:geo",
            ),
            DEAD_LETTERS,
            _heartbeat_keys("matching-geo"),
        ),
        appends=(*DEAD_LETTERS, "health"),
        scoped=_own_heartbeat("matching-geo"),
    ),
    # Speeds from telemetry, ETAs of active rides (groups `eta` and `eta.speeds`).
    "eta": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            BUS_CONSUMER,
            SCRIPTS,
            ("exists", "hset", "hget", "hgetall", "zrange"),
        ),
        reads=(
            *_lease_keys("eta"),
            "{*}:rides",
            "{*}:telemetry",
            "{*}:ride:*",
            "{*}:rides:active",
            "{*}:drivers:pos",
            "{*}:eta:speeds",
            "{*}:eta",  # a key named to EVALSHA (set_eta writes the ETA + event) must be read-write
        ),
        writes=_unique(
            ("{*}:rides", "{*}:telemetry", "{*}:ride:*", "{*}:eta", "{*}:eta:speeds"),
            DEAD_LETTERS,
            _heartbeat_keys("eta"),
            _lease_keys("eta"),
        ),
        appends=("{*}:eta", *DEAD_LETTERS, "health"),
        scoped=(*_own_heartbeat("eta"), *_lease_scoped("eta")),
    ),
    # Surge per H3 cell from demand (ride stream, group `pricing`) and supply (the geo index).
    "pricing": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            BUS_CONSUMER,
            ("hgetall", "hset", "hdel", "xrange", "zrange", "geopos"),
            SCRIPTS,
        ),
        reads=(
            *_lease_keys("pricing"),
            "{*}:rides",
            "{*}:drivers:geo",
            "{*}:surge:cells",
            "{*}:surge",  # a key named to EVALSHA (the fenced write + event) must be read-write
        ),
        writes=_unique(
            ("{*}:rides", "{*}:surge", "{*}:surge:cells"),
            DEAD_LETTERS,
            _heartbeat_keys("pricing"),
            _lease_keys("pricing"),
        ),
        appends=("{*}:surge", *DEAD_LETTERS, "health"),
        scoped=(*_own_heartbeat("pricing"), *_lease_scoped("pricing")),
    ),
    # Group-aware trimming of ride streams and age trimming of telemetry.
    "janitor": Grant(
        commands=_unique(
            CONNECTION,
            HEARTBEAT,
            SCRIPTS,
            RIDE_STEP_COMMANDS,  # lose_driver.lua, evict_drivers.lua
            (
                "exists",
                "xtrim",
                "xinfo|groups",
                "xinfo|consumers",
                "xpending",
                "time",
                "zrangebyscore",
                "zscore",
            ),
            # telemetry groups' backlog: trimmed before read, and behind (ridepulse/bus/backlog.py)
            ("xlen", "xrange"),
            # the heard-until stamp and unheard stretches (ridepulse/heard_until.py: its script
            # runs GET, SET, ZADD, ZRANGEBYSCORE; old stretches are trimmed by score)
            ("zremrangebyscore",),
            ("smembers", "srem"),  # riders' ride and open-rides sets, the heartbeat set
            # Riders' sets are found by SCAN (ridepulse/retention.py). SCAN names no key,
            # so key patterns cannot narrow it: the janitor sees key names, never values.
            ("scan",),
        ),
        reads=_unique(
            RIDE_STEP_KEYS,
            ("{*}:telemetry", "{*}:drivers:seen", "{*}:rider:*"),
            ("{*}:drivers:heard", "{*}:drivers:unheard"),
            ("heartbeats", "heartbeat:*"),  # EXISTS of every consumer's heartbeat key
        ),
        writes=_unique(
            RIDE_STEP_KEYS,
            ("{*}:telemetry", "{*}:drivers:seen", "{*}:rider:*"),
            ("{*}:drivers:heard", "{*}:drivers:unheard"),
            _heartbeat_keys("janitor"),
        ),
        appends=("{*}:rides", "health"),
        # evict_drivers.lua deletes a departed driver's hash; nothing else is deleted.
        scoped=(("del", ("heartbeat:janitor:*", "{*}:driver:*")),),
    ),
    # The dashboard only looks: reads of the deployment's keys, nothing else.
    "dashboard": Grant(
        commands=_unique(
            CONNECTION,
            (
                "xread",
                "xrevrange",
                "xlen",
                "xinfo|stream",
                "xinfo|groups",
                "get",
                "hgetall",
                "zrange",
                "smembers",
            ),
        ),
        reads=("*",),
    ),
}
