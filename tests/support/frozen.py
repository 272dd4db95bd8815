"""A server frozen as a network partition looks to its clients: the connection stays, no reply
and no error come (SIGSTOP, then SIGCONT on the way out)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from ridepulse.redis_server import EmbeddedRedis


@contextlib.contextmanager
def frozen(server: EmbeddedRedis) -> Iterator[None]:
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)
