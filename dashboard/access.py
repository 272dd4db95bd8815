"""Who may read the feed: a `dashboard`-audience token (never an API token), and for
WebSockets a same-origin page.

A dashboard link carries a short-lived token; opening it swaps that for a longer-lived session
token in an HttpOnly, SameSite=Strict cookie, so the link can be shared without sharing power
and page scripts never see the session (docs/security.md). Only a link (`use` = `link`) is
exchanged: a session opened as a link would renew itself for ever. Any dashboard token, link or
session, opens the feed and the APIs; a session inherits its link's grant, which the feed's
socket cap counts by."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.responses import Response
from fastapi.security import APIKeyCookie, APIKeyQuery, HTTPBearer

from ridepulse.auth import (
    DASHBOARD_SESSION_TTL_S,
    Principal,
    bearer,
    mint_token,
    verify_token,
)
from ridepulse.errors import Unauthorized
from ridepulse.settings import Settings

SESSION_COOKIE = "rp_dashboard"

# The three ways a viewer presents its token, as the OpenAPI document declares them (any one
# will do). Declared only: none refuses on its own (auto_error off); `token_from` chooses.
TOKEN_QUERY = APIKeyQuery(
    name="token",
    scheme_name="dashboardLink",
    description="a dashboard token in the query (`ridepulse token --dashboard`, or a link's)",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="a dashboard token (`ridepulse token --dashboard`); API tokens are refused",
    auto_error=False,
)
SESSION = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="sessionCookie",
    description="the HttpOnly session cookie that opening a dashboard link sets",
    auto_error=False,
)


def token_from(
    query_token: str | None, authorization: str | None, cookie: str | None = None
) -> str | None:
    """An explicit token (query, then header) wins over the session cookie."""
    if query_token:
        return query_token
    if authorization:
        return bearer(authorization)
    return cookie or None


def require_viewer(settings: Settings, secret: str, token: str | None) -> Principal | None:
    """The dashboard principal; None when auth is off. Unauthorized otherwise (API tokens too:
    they are for another audience)."""
    if not settings.auth_enabled:
        return None
    if not token:
        raise Unauthorized(
            "a dashboard token is required: open the link `ridepulse up` prints, "
            "or ?token=… / Authorization: Bearer … (`ridepulse token --dashboard`)"
        )
    return verify_token(secret, token, audience="dashboard").require("viewer")


def require_link(settings: Settings, secret: str, token: str) -> Principal | None:
    """`require_viewer`, for a link only: a session (or a token that says nothing of its use)
    is Unauthorized here, so it cannot be exchanged for a fresh session."""
    link = require_viewer(settings, secret, token)
    if link is not None and link.use != "link":
        raise Unauthorized("only a dashboard link opens a session: open a fresh link")
    return link


def start_session(response: Response, secret: str, link: Principal, secure: bool) -> None:
    """Swap a verified link token for a session cookie the page's scripts cannot read. The
    session carries the link's grant, so every session of one link shares its socket cap."""
    session = mint_token(
        secret,
        "viewer",
        link.subject,
        ttl_s=DASHBOARD_SESSION_TTL_S,
        audience="dashboard",
        use="session",
        jti=link.grant,  # a link without a jti passes on its claims digest
    )
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=DASHBOARD_SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """No Origin: not a browser (CLI, tests, probes). Otherwise the page must come from this
    very host:port, which defeats cross-site WebSocket hijacking. `host` is the request's Host,
    or a trusted proxy's X-Forwarded-Host (dashboard/forwarded.py)."""
    if origin is None:
        return True
    if not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
