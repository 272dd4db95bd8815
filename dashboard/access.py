"""Who may read the feed: an ops token (when auth is on), and for WebSockets a same-origin page."""

from __future__ import annotations

from urllib.parse import urlsplit

from ridepulse.auth import Principal, bearer, verify_token
from ridepulse.errors import Unauthorized
from ridepulse.settings import Settings


def token_from(query_token: str | None, authorization: str | None) -> str | None:
    if query_token:
        return query_token
    return bearer(authorization) if authorization else None


def require_ops(settings: Settings, secret: str, token: str | None) -> Principal | None:
    """The ops principal; None when auth is off. Unauthorized / Forbidden otherwise."""
    if not settings.auth_enabled:
        return None
    if not token:
        raise Unauthorized("an ops token is required: ?token=… or Authorization: Bearer …")
    return verify_token(secret, token).require("ops")


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """No Origin: not a browser (CLI, tests, probes). Otherwise the page must come from this
    very host:port, which defeats cross-site WebSocket hijacking."""
    if origin is None:
        return True
    if not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
