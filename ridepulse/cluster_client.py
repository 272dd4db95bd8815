"""redis-py's asyncio cluster client, kept from tying every market to a shard that is gone.

Markets spread over shards (DESIGN §11), so one shard with no node left must take down its own
markets only. redis-py's client re-reads the slot map after a command times out, and each
re-read reached the lost shard again: the COMMAND table from the primary of slot 0, and the slot
map from a seed picked at random. A frozen node made every such re-read wait out its timeout
(or fail), and commands of every market waited with it."""

from __future__ import annotations

from typing import Any

from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.typing import EncodableT


def request_cluster_retry() -> Retry:
    """A request's cluster command is tried once. redis-py's default tries a timed-out command
    10 more times, each on a fresh slot map that still names the same frozen primary until the
    cluster fails over: a request of a market whose whole shard was frozen waited 3 s a try, up
    to 15 s in the hunt. Its 503 + Retry-After comes at the first timeout instead, and the
    client's next command starts from a fresh slot map (redis-py marks it for that)."""
    return Retry(NoBackoff(), retries=0)


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


class ClusterClient(RedisCluster):
    """RedisCluster whose re-read of the slot map asks last the node that failed last.

    redis-py does so only within the retries of the command that failed; the next command (of
    any market) re-read from a seed picked at random, the frozen node as likely as any."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands_parser = CommandTableOnce()
        self._last_failed_node: str | None = None

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (ConnectionError, TimeoutError) as exc:
            self._last_failed_node = getattr(exc, "last_failed_node_name", None)
            raise

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        return await super().initialize(
            additional_startup_nodes_info, last_failed_node_name or self._last_failed_node
        )
