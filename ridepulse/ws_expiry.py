"""An open WebSocket lives no longer than the token that opened it (docs/security.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.websockets import WebSocket

# 4000–4999 are the application's own close codes; 4401 reads as "401 on a socket". Clients
# mint or fetch a fresh token and reconnect.
TOKEN_EXPIRED = 4401


async def close_at_expiry(websocket: WebSocket, expires_at: float) -> None:
    """Sleep until `expires_at` (epoch seconds), then close with 4401 "token expired".

    Run as a task beside the socket's own loops; cancelling it is the normal way out."""
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    with contextlib.suppress(Exception):  # the peer may be gone already
        await websocket.close(TOKEN_EXPIRED, reason="token expired")
