"""Redis ACL users: each service connects as its own user with only what it needs (DESIGN §9).

The embedded server loads these from an ACL file in its data dir; on a cluster, load the same
file on every node (ACL users live per node). Key patterns use the key prefix, so one server
can host several isolated deployments."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

# Consumers and ingest write streams, projections and run the ride scripts; nobody but the
# operator may reconfigure, flush or shut the server down (-@admin -@dangerous).
_WRITER = "+@all -@admin -@dangerous"
SERVICE_RULES: dict[str, str] = {
    "ingest": _WRITER,
    "matching": _WRITER,
    "matching-geo": _WRITER,
    "eta": _WRITER,
    "pricing": _WRITER,
    "janitor": _WRITER,
    # The dashboard only looks: reads, stream reads and connection commands.
    "dashboard": "+@read +@connection",
}


def _load_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def service_passwords(data_dir: Path) -> dict[str, str]:
    """One password per service user, generated once and kept (0600) in the data dir."""
    path = data_dir / "acl.passwords"
    known = _load_passwords(path)
    changed = False
    for user in SERVICE_RULES:
        if user not in known:
            known[user] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        path.write_text("".join(f"{u}={p}\n" for u, p in known.items()))
        path.chmod(0o600)
    return known


def acl_file_text(default_password: str, passwords: dict[str, str], prefix: str = "rp") -> str:
    """The server's ACL file: the operator (`default`) and one user per service."""
    lines = [f"user default on >{default_password} ~* &* +@all"]
    for user, rules in SERVICE_RULES.items():
        lines.append(f"user {user} on >{passwords[user]} ~{prefix}:* &* {rules}")
    return "\n".join(lines) + "\n"


def service_url(host: str, port: int, user: str, password: str) -> str:
    return f"redis://{quote(user)}:{quote(password)}@{host}:{port}/0"
