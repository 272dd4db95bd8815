"""Signed bearer tokens (JWT, HS256) and roles. The CLI mints them for development."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import jwt

from ridepulse.errors import Forbidden, Unauthorized
from ridepulse.settings import Settings

Role = Literal["driver", "rider", "fleet", "ops"]
ROLES: tuple[str, ...] = get_args(Role)
ALGORITHM = "HS256"
ISSUER = "ridepulse"
DEFAULT_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    subject: str

    def require(self, *roles: str) -> Principal:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this (needs {' or '.join(roles)})")
        return self


def resolve_secret(settings: Settings) -> str:
    """RIDEPULSE_SECRET, else a secret generated once into the data dir (shared by services)."""
    if settings.secret:
        return settings.secret
    path = Path(settings.data_dir) / "secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


def mint_token(secret: str, role: str, subject: str, *, ttl_s: int = DEFAULT_TTL_S) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Principal:
    """Decode and check signature, expiry and issuer; Unauthorized with the reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthorized("token has no valid role")
    return Principal(role=str(role), subject=str(claims["sub"]))


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()
