"""Redis ACL users: each service connects as its own user with an allow-list of the commands
it sends and the keys it owns (DESIGN §9, docs/security.md). The grants themselves are data in
ridepulse/acl_grants.py; this module renders them into an ACL file and keeps the passwords.

Passwords live in the ACL file only as SHA-256 hashes (`#<hex>`); the plaintext of each
service's password is in `acl.passwords` (0600) in the data dir, for the launcher to hand to
that service. On a cluster, load the same ACL file on every node (users live per node)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from urllib.parse import quote

from ridepulse.acl_grants import OVERWRITES, SERVICE_GRANTS, STREAMS, Grant
from ridepulse.auth import write_private

__all__ = ["SERVICE_GRANTS", "Grant", "acl_file_text", "redis_url", "service_passwords"]


def grant_rules(grant: Grant, prefix: str) -> str:
    """One user's rules in ACL syntax, on keys under `prefix`."""
    root = [c for c in grant.commands if c not in OVERWRITES]
    rules = ["resetchannels", "-@all", *(f"+{c}" for c in root)]
    rules += [f"%R~{prefix}:{pattern}" for pattern in grant.reads]
    rules += [f"%W~{prefix}:{pattern}" for pattern in grant.writes]
    overwrites = " ".join(f"+{c}" for c in grant.commands if c in OVERWRITES)
    not_streams = " ".join(f"%W~{prefix}:{p}" for p in grant.writes if p not in STREAMS)
    if overwrites and not_streams:
        rules.append(f"({overwrites} {not_streams})")
    if grant.appends:
        streams = " ".join(f"%W~{prefix}:{p}" for p in grant.appends)
        rules.append(f"(+xadd {streams})")
    for command, patterns in grant.scoped:
        keys = " ".join(f"%RW~{prefix}:{p}" for p in patterns)
        rules.append(f"(+{command} {keys})")
    return " ".join(rules)


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _load_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def service_passwords(data_dir: Path) -> dict[str, str]:
    """One password per service user, generated once and kept (0600 from creation)."""
    path = data_dir / "acl.passwords"
    known = _load_passwords(path)
    changed = False
    for user in SERVICE_GRANTS:
        if user not in known:
            known[user] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        write_private(path, "".join(f"{u}={p}\n" for u, p in known.items()))
    return known


def acl_file_text(default_password: str, passwords: dict[str, str], prefix: str = "rp") -> str:
    """The server's ACL file: the operator (`default`) and one user per service, passwords
    stored as SHA-256 hashes only."""
    lines = [f"user default on #{password_hash(default_password)} ~* &* +@all"]
    for user, grant in SERVICE_GRANTS.items():
        lines.append(
            f"user {user} on #{password_hash(passwords[user])} {grant_rules(grant, prefix)}"
        )
    return "\n".join(lines) + "\n"


def write_acl_file(
    path: Path, default_password: str, passwords: dict[str, str], prefix: str
) -> None:
    write_private(path, acl_file_text(default_password, passwords, prefix))


def redis_url(nodes: str, password: str, user: str = "", *, cluster: bool = False) -> str:
    """A URL of the server (`host:port`) or of the cluster (`host:port,host:port,...`, every
    node a seed); no user is the operator's `default` one."""
    scheme = "redis+cluster" if cluster else "redis"
    return f"{scheme}://{quote(user)}:{quote(password)}@{nodes}/0"
