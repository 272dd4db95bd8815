"""Proxy headers believed from the proxies RIDEPULSE_FORWARDED_ALLOW_IPS names, and from no one
else: X-Forwarded-Proto and -For (uvicorn's own middleware) and X-Forwarded-Host.

Behind a TLS proxy that rewrites Host (nginx's default `Host: $proxy_host`), a browser's Origin
names the public host and only X-Forwarded-Host says it; the feed compares Origin with Host
(dashboard/access.py), so it refused every browser. From a trusted proxy the Host header becomes
the forwarded host. This wraps uvicorn's middleware rather than following it because that one
replaces the peer's address with the forwarded client's: the trust must be decided first."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class TrustedProxyHeaders:
    """uvicorn's ProxyHeadersMiddleware plus X-Forwarded-Host, on one list of trusted peers."""

    def __init__(self, app: ASGIApp, trusted_hosts: str) -> None:
        self.proxy = ProxyHeadersMiddleware(app, trusted_hosts)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if (
            scope["type"] in ("http", "websocket")
            and client
            and client[0] in self.proxy.trusted_hosts
        ):
            scope = with_forwarded_host(scope)
        await self.proxy(scope, receive, send)  # type: ignore[arg-type]


def with_forwarded_host(scope: Scope) -> Scope:
    """`scope` with Host set to X-Forwarded-Host's last value (the one the nearest proxy, the
    trusted one, wrote); unchanged without the header."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    forwarded = [value for name, value in headers if name == b"x-forwarded-host"]
    host = b",".join(forwarded).split(b",")[-1].strip() if forwarded else b""
    if not host:
        return scope
    rest = [(name, value) for name, value in headers if name != b"host"]
    return {**scope, "headers": [*rest, (b"host", host)]}
