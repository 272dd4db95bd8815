"""What a Redis URL must be before anything connects with it: the schemes the platform speaks,
a port from 1 to 65535, options redis-py can read, and for `redis+cluster://` every seed node."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from redis.connection import parse_url

# what ridepulse.redis_client.connect understands (redis+cluster:// gives a cluster client)
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://")
PORT_RANGE = range(1, 65536)


def cluster_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A `redis+cluster://` URL as redis-py takes it: a `redis://` URL of its first node, and
    every other node it names (`redis+cluster://:pw@h1:p1,h2:p2/0`) as (host, port).

    redis-py's URL names one node, and a client seeded from one node cannot start while that
    node is down, however healthy the rest of the cluster; every node named is a seed."""
    rest = url.partition("://")[2]
    credentials, at, hosts_and_path = rest.rpartition("@")
    hosts = re.split(r"[/?]", hosts_and_path, maxsplit=1)[0]
    first, *others = hosts.split(",")
    seeds = []
    for other in others:
        host, _, port = other.rpartition(":")
        seeds.append((host, int(port)))
    return f"redis://{credentials}{at}{first}{hosts_and_path[len(hosts) :]}", seeds


def _seed_problem(seed: str) -> str | None:
    host, colon, port = seed.rpartition(":")
    if not seed:
        return "an empty node between commas"
    if not colon or not host:
        return f"node {seed!r} is not host:port"
    if not port.isdigit() or int(port) not in PORT_RANGE:
        return f"node {seed!r}: the port is not a number from 1 to 65535"
    return None


def _node_problem(url: str) -> str | None:
    """A `redis://`, `rediss://` or `unix://` URL as redis-py would read it, held to the port
    range redis-py does not check (it reads `:0` as no port at all, so 6379)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed bracket
        return str(exc)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and port not in PORT_RANGE:
        return "the port is not a number from 1 to 65535"
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # redis-py's messages name the option, never the password
        return str(exc).rstrip(".")
    path = parts.path
    if not url.startswith("unix://") and path not in ("", "/") and not path[1:].isdigit():
        return f"the database {path[1:]!r} (the URL's path) is not a number"
    return None


def url_problem(url: str) -> str | None:
    """Why the platform cannot use `url`, in words that never repeat its password; None if
    it can."""
    if not url.startswith(REDIS_URL_SCHEMES):
        return f"a Redis URL starts with one of {', '.join(REDIS_URL_SCHEMES)}"
    if not url.startswith("redis+cluster://"):
        return _node_problem(url)
    hosts = re.split(r"[/?]", url.partition("://")[2].rpartition("@")[2], maxsplit=1)[0]
    first, *others = hosts.split(",")
    for seed in others:
        if problem := _seed_problem(seed):
            return problem
    return _node_problem(cluster_seeds(url)[0]) if first else "no node before the first comma"
