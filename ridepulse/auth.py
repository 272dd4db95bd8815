"""Signed bearer tokens (JWT, HS256), their audiences and roles. The CLI mints them.

Every token names the one surface it is good for (`aud`): `api` tokens (driver, rider, fleet,
ops) open the ingest API and the driver WebSocket; `dashboard` tokens (role `viewer`) only look
at the dashboard. Each surface refuses the other's tokens, so a shared dashboard link carries no
power over rides or drivers (docs/security.md).

A dashboard token also says what it is for (`use`): a `link` is the short-lived token a URL
carries, exchanged when opened for a `session` (the cookie); a session is never exchanged for
another, so nothing outlives a link by more than one session's lifetime. A link carries an id
(`jti`) that each of its sessions inherits: the grant that WebSocket caps count by."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import jwt

from ridepulse.errors import Forbidden, Unauthorized
from ridepulse.settings import MIN_SECRET_CHARS, Settings

Role = Literal["driver", "rider", "fleet", "ops", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
Audience = Literal["api", "dashboard"]
AUDIENCES: tuple[str, ...] = get_args(Audience)
# Which roles a token of each audience may carry: the dashboard only ever looks.
AUDIENCE_ROLES: dict[str, tuple[str, ...]] = {
    "api": ("driver", "rider", "fleet", "ops"),
    "dashboard": ("viewer",),
}
API_ROLES = AUDIENCE_ROLES["api"]
ALGORITHM = "HS256"
ISSUER = "ridepulse"
DEFAULT_TTL_S = 12 * 3600
# A dashboard link sits in scrollback and screen shares: it is only good for a few minutes,
# long enough to open it once; opening it swaps it for a session cookie.
DASHBOARD_LINK_TTL_S = 10 * 60
DASHBOARD_SESSION_TTL_S = 12 * 3600
Use = Literal["link", "session"]
USES: tuple[str, ...] = get_args(Use)
SECRET_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    subject: str
    audience: str = "api"
    expires_at: float = 0.0  # epoch seconds; open WebSockets close then
    use: str | None = None  # a dashboard token's `use`; None for API tokens (and older ones)
    # Who granted this token: its `jti` (a link's, inherited by its sessions), else a digest
    # of its verified claims. Never the token's text, which several spellings verify as.
    grant: str = ""

    def require(self, *roles: str) -> Principal:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this (needs {' or '.join(roles)})")
        return self


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte (no
    write-then-chmod window in which another local user could read a secret), and whole or
    not at all: the text goes to a new file beside it, synced, then renamed over it. A full
    disk used to leave a 0-byte secret behind, which every later command failed on."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new dir is private too
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), SECRET_FILE_MODE)  # the umask cannot widen it either
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def private_dir(path: Path) -> Path:
    """A directory only its owner may list or enter (0700), made so from the start."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is masked by the umask, and an existing dir keeps its own
    return path


class UnusableSecret(ValueError):
    """The data dir's secret file is too short to sign with (empty after a failed write)."""


def resolve_secret(settings: Settings) -> str:
    """RIDEPULSE_SECRET, else a secret generated once into the data dir (shared by services).
    A stored secret shorter than MIN_SECRET_CHARS raises UnusableSecret."""
    if settings.secret:
        return settings.secret
    path = Path(settings.data_dir) / "secret"
    if path.exists():
        value = path.read_text().strip()
        if len(value) < MIN_SECRET_CHARS:
            raise UnusableSecret(
                f"the secret in {path} has {len(value)} characters, {MIN_SECRET_CHARS} at "
                "least: delete the file to have a new one made (old tokens stop working), "
                "or set RIDEPULSE_SECRET"
            )
        return value
    private_dir(Path(settings.data_dir))
    value = secrets.token_urlsafe(48)
    write_private(path, value)
    return value


def mint_token(
    secret: str,
    role: str,
    subject: str,
    *,
    ttl_s: int = DEFAULT_TTL_S,
    audience: str = "api",
    use: str | None = None,
    jti: str | None = None,
) -> str:
    """A signed token; `use` and `jti` are for dashboard links and their sessions."""
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}; audiences: {', '.join(AUDIENCES)}")
    if role not in AUDIENCE_ROLES[audience]:
        allowed = ", ".join(AUDIENCE_ROLES[audience])
        raise ValueError(f"role {role!r} is not for the {audience} audience; roles: {allowed}")
    if use is not None and use not in USES:
        raise ValueError(f"unknown use {use!r}; uses: {', '.join(USES)}")
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": audience,
        "sub": subject,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    if use is not None:
        claims["use"] = use
    if jti is not None:
        claims["jti"] = jti
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint_dashboard_link(secret: str, subject: str, ttl_s: int = DASHBOARD_LINK_TTL_S) -> str:
    """The short-lived token a dashboard URL carries, with a grant id of its own."""
    return mint_token(
        secret,
        "viewer",
        subject,
        ttl_s=ttl_s,
        audience="dashboard",
        use="link",
        jti=secrets.token_urlsafe(16),
    )


def _grant_of(claims: dict[str, object]) -> str:
    """The token's `jti`; without one, a digest of the verified claims (equal for every
    spelling of one token: base64 lets a signature be written several ways that all verify)."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return jti
    canonical = "\n".join(f"{k}={claims[k]!r}" for k in sorted(claims))
    return "claims:" + hashlib.sha256(canonical.encode()).hexdigest()


def verify_token(secret: str, token: str, audience: str = "api") -> Principal:
    """Decode and check signature, expiry, issuer and audience; Unauthorized otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=audience,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"token is not for the {audience} (wrong audience)") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims.get("role")
    if role not in AUDIENCE_ROLES[audience]:
        raise Unauthorized("token has no valid role")
    return Principal(
        role=str(role),
        subject=str(claims["sub"]),
        audience=audience,
        expires_at=float(claims["exp"]),
        use=str(claims["use"]) if "use" in claims else None,
        grant=_grant_of(claims),
    )


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()
