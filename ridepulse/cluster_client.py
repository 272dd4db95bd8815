"""redis-py's asyncio cluster client, kept from tying every market to a shard that is gone.

Markets spread over shards (DESIGN §11), so one shard with no node left must take down its own
markets only. redis-py's client re-reads the slot map after a command times out, and each
re-read reached the lost shard again: the COMMAND table from the primary of slot 0, and the slot
map from a seed picked at random. A frozen node made every such re-read wait out its timeout
(or fail), and commands of every market waited with it."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, ClusterError, ConnectionError, TimeoutError
from redis.typing import EncodableT


def request_cluster_retry() -> Retry:
    """A request's cluster command is tried once. redis-py's default tries a timed-out command
    10 more times, each on a fresh slot map that still names the same frozen primary until the
    cluster fails over: a request of a market whose whole shard was frozen waited 3 s a try, up
    to 15 s in the hunt. Its 503 + Retry-After comes at the first timeout instead, and the
    client's next command starts from a fresh slot map (redis-py marks it for that)."""
    return Retry(NoBackoff(), retries=0)


# While a slot moves to another primary, a command touching keys on both sides (a script, a
# multi-key read) gets TRYAGAIN until the last key moved, and redis-py follows TRYAGAIN/ASK 16
# times (about 0.4 s) before ClusterError("TTL exhausted."): the command never ran, so trying it
# again is safe. A request client does so after a short pause, for about a second in all, so a
# request caught by a short migration is answered late instead of 503.
REQUEST_REDIRECT_BUDGET_S = 1.0
REDIRECT_RETRY_PAUSE_S = 0.1


class CommandTableOnce(AsyncCommandsParser):
    """redis-py read the server's COMMAND table again on every re-read of the slot map, from the
    primary of slot 0: with that primary's shard frozen, every re-read failed after its timeout.
    The table is the server's and does not change while it runs: read at the first connect, and
    again only for a command it does not name (redis-py asks without a node then)."""

    async def initialize(self, node: Any = None) -> None:
        if node is None or not self.commands:
            await super().initialize(node)
        else:
            self.node = node  # where COMMAND GETKEYS goes: the slot map's first primary


class MostRecentFirst(collections.deque[Any]):
    """A node's free connections, the one released last handed out first.

    redis-py follows an ASK redirect with two calls on the target node, ASKING then the
    command, each taking a free connection (popleft) and giving it back (append): with two or
    more free, the command went out on another connection than its ASKING, the importing node
    answered MOVED back to the source, which sent ASK again, until "TTL exhausted." Every
    single-key command of a migrating slot's moved keys failed so under concurrency. Nothing
    awaits between the two calls, so with last-in-first-out the command takes ASKING's
    connection."""

    def popleft(self) -> Any:
        return self.pop()


class ClusterClient(RedisCluster):
    """RedisCluster whose re-read of the slot map asks last the node that failed last.

    redis-py does so only within the retries of the command that failed; the next command (of
    any market) re-read from a seed picked at random, the frozen node as likely as any."""

    def __init__(self, *args: Any, redirect_budget_s: float = 0.0, **kwargs: Any) -> None:
        # redis-py's default (5) closed every connection of every node at each 5th MOVED and
        # re-read the slot map: once a market's slot moved, commands of other markets in flight
        # on those connections failed ("Connection closed by server", "'NoneType' object has no
        # attribute 'writelines'"). 0 patches the moved slot alone; a dropped node still makes
        # the client re-read the whole map.
        kwargs.setdefault("reinitialize_steps", 0)
        super().__init__(*args, **kwargs)
        self.commands_parser = CommandTableOnce()
        self._last_failed_node: str | None = None
        self.redirect_budget_s = redirect_budget_s

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.redirect_budget_s
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except (ConnectionError, TimeoutError) as exc:
                self._last_failed_node = getattr(exc, "last_failed_node_name", None)
                raise
            except ClusterDownError:
                raise
            except ClusterError:  # out of redirects: a slot being migrated
                if time.monotonic() + REDIRECT_RETRY_PAUSE_S >= deadline:
                    raise
                await asyncio.sleep(REDIRECT_RETRY_PAUSE_S)

    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> ClusterNode | None:
        """The node, its free connections handed out last-released first: redis-py asks here
        for the target of an ASK redirect before sending it ASKING and the command."""
        node = super().get_node(host, port, node_name)
        if node is not None and not isinstance(node._free, MostRecentFirst):
            node._free = MostRecentFirst(node._free, maxlen=node._free.maxlen)
        return node

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        return await super().initialize(
            additional_startup_nodes_info, last_failed_node_name or self._last_failed_node
        )
