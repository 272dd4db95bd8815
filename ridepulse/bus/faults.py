"""Which Redis errors are the server's passing trouble, not the event's fault, and how to wait.

A transient error (the connection dropped, a timeout, the server loading its AOF, out of memory,
its disk refusing writes, too few replicas, a failover, role change or slot migration in
progress) is retried with backoff and never counts against an event's delivery budget; anything
else a handler raises is the event's failure (DESIGN §9b)."""

from __future__ import annotations

import random

from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py maps these replies to their own classes (and strips the word from the message);
# BusyLoadingError (LOADING) is a ConnectionError. ClusterError covers CLUSTERDOWN (its subclass)
# and redis-py's own "TTL exhausted.": its cluster client followed a command's TRYAGAIN, ASK and
# MOVED replies 16 times and gave up, as it does for a command of a slot being migrated to
# another primary (alone, or quoted in a pipeline's message: the class stays ClusterError).
TRANSIENT_CLASSES = (
    RedisConnectionError,
    RedisTimeoutError,
    TimeoutError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    ClusterError,
    MasterDownError,
)

# Other replies that say "the server cannot do this now", by their first word. MISCONF: the
# server cannot persist (a full disk under its AOF, a failed RDB save) and refuses writes until
# it can; NOREPLICAS: fewer replicas than min-replicas-to-write; UNBLOCKED: a blocked XREADGROUP
# ended by a role change (master -> replica), even one that was undone half a second later.
TRANSIENT_REPLIES = frozenset(
    (
        "OOM",
        "LOADING",
        "READONLY",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "BUSY",
        "MISCONF",
        "NOREPLICAS",
        "UNBLOCKED",
    )
)

# redis-py's cluster client raises RedisClusterException, which is no RedisError, when it re-reads
# the slot map and no seed answers or the slots are not all served yet (every node restarting, a
# shard with none left). Its other uses are our bugs (keys of two slots in one command).
PASSING_CLUSTER_TROUBLE = ("cannot be connected", "slots are not covered", "could not agree")

# redis-py rewrites the message of a pipeline's first failed command: "Command # 1 (SET k v) of
# pipeline caused error: MISCONF ..." (the asyncio client quotes it as a tuple: "('MISCONF ...',)").
PIPELINE_ERROR_MARK = " of pipeline caused error: "


# While a cluster node dies, redis-py's asyncio cluster client can raise from its own code on the
# transport torn down under it: RuntimeError ("unable to perform operation on <TCPTransport
# closed=True ...>; the handler is closed") or AttributeError ("'NoneType' object has no attribute
# 'writelines'"), seen in tests/e2e/test_cluster_failover.py. Only these two classes, and only
# when raised inside the client, count: the same classes from our own code are bugs.
TORN_CONNECTION_CLASSES = (RuntimeError, AttributeError)


def raised_inside_redis_client(exc: BaseException) -> bool:
    """True when the traceback passes through the redis package: the client raised it."""
    frame = exc.__traceback__
    while frame is not None:
        module = str(frame.tb_frame.f_globals.get("__name__", ""))
        if module == "redis" or module.startswith("redis."):
            return True
        frame = frame.tb_next
    return False


def is_transient(exc: BaseException) -> bool:
    """A connection, timeout or server-state error: retry later, the event is not to blame."""
    if isinstance(exc, TRANSIENT_CLASSES):
        return True
    if isinstance(exc, TORN_CONNECTION_CLASSES) and raised_inside_redis_client(exc):
        return True
    if isinstance(exc, ResponseError):
        return reply_code(exc) in TRANSIENT_REPLIES
    if isinstance(exc, RedisClusterException):
        return any(trouble in str(exc) for trouble in PASSING_CLUSTER_TROUBLE)
    return False


def refused_credentials(exc: BaseException) -> bool:
    """The server turned down the user or password (WRONGPASS). redis-py raises it as a
    connection error, so `is_transient` says yes: right while running (an operator mid-rotation
    of a password), wrong at start-up, where waiting cannot fix it."""
    return isinstance(exc, AuthenticationError)


def reply_code(exc: ResponseError) -> str:
    """The first word of the server's reply (MISCONF, WRONGTYPE...), inside a pipeline too."""
    message = str(exc)
    if message.startswith("Command # ") and PIPELINE_ERROR_MARK in message:
        message = message.rpartition(PIPELINE_ERROR_MARK)[2].lstrip("('\"")
    return message.split(" ", 1)[0]


def is_nogroup(exc: BaseException) -> bool:
    """The group (or its stream) is gone: the server lost its data (DESIGN §11)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


class Backoff:
    """Exponential backoff with full jitter: 0.1 s doubling up to `cap_s` while errors last."""

    def __init__(self, first_s: float = 0.1, cap_s: float = 5.0, seed: int | None = None) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.attempts = 0
        self._random = random.Random(seed)

    def reset(self) -> None:
        self.attempts = 0

    def next_s(self) -> float:
        ceiling: float = min(self.cap_s, self.first_s * 2**self.attempts)
        self.attempts += 1
        jitter: float = self._random.uniform(0, ceiling / 2)
        return ceiling / 2 + jitter

    def after_failure_s(self, interval_s: float) -> float:
        """The pause of a periodic loop after a failed pass: its interval, or longer while the
        failures last (a 0.25 s sweep retried 4 times a second against a server that was down,
        a warning each time). The loop resets the backoff after a pass that succeeds."""
        return max(interval_s, self.next_s())
