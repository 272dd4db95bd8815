"""At most `limit` WebSockets open at once per grant, in one process; past it the upgrade is
refused with HTTP 429 and `Retry-After` (docs/security.md, "WebSocket caps").

A slot is taken before the handshake is accepted and given back in the socket's `finally`, so
every way a socket ends (a clean close, a dropped connection, a server-side close) frees it.
The table is keyed by the verified token's grant (`Principal.grant`: a dashboard link's `jti`,
which its sessions inherit, else a digest of the claims), never by the token's text: base64
lets one signature be spelled several ways that all verify, and each spelling had a cap of its
own. A heap dump or a debugger shows no credential. Shared by the dashboard feed and ingest's
driver socket (which keeps its own refusal)."""

from __future__ import annotations

import orjson
from starlette.responses import Response
from starlette.websockets import WebSocket

from ridepulse.errors import RateLimited
from ridepulse.ws_close import close_reason

# A refused client (the dashboard page, a driver app) retries on its own backoff; five seconds
# is long enough for a socket the client just closed to be seen closed by the server.
CAP_RETRY_AFTER_S = 5
POLICY_VIOLATION = 1008


class ConnectionCap:
    """Open sockets per grant, in this process (limit 0 = no cap)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        """Grants with at least one open socket: a grant's entry goes with its last socket."""
        return len(self._open)

    def acquire(self, grant: str) -> bool:
        """Take a slot for `grant`; False (and nothing taken) when it holds `limit` already."""
        count = self._open.get(grant, 0)
        if self.limit > 0 and count >= self.limit:
            return False
        self._open[grant] = count + 1
        return True

    def release(self, grant: str) -> None:
        """Give back a slot `acquire` granted; call it exactly once per granted slot."""
        count = self._open.get(grant, 0) - 1
        if count > 0:
            self._open[grant] = count
        else:
            self._open.pop(grant, None)


async def refuse_over_cap(websocket: WebSocket, limit: int) -> None:
    """Answer the upgrade with 429, `Retry-After` and the JSON error body; on a server without
    the ASGI denial-response extension, a close before accepting (the server's 403)."""
    detail = f"at most {limit} open WebSocket(s) per token"
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(POLICY_VIOLATION, close_reason(detail))
        return
    body = orjson.dumps({"error": RateLimited.code, "detail": detail})
    headers = {"Retry-After": str(CAP_RETRY_AFTER_S)}
    denial = Response(body, RateLimited.status, headers, media_type="application/json")
    await websocket.send_denial_response(denial)
