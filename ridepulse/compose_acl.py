"""The ACL file for docker-compose's Valkey, and the `.env` of fresh secrets it reads.

    python -m ridepulse.compose_acl env > .env        # once: secret and one password per user
    python -m ridepulse.compose_acl env --cluster > .env   # the same, services on the cluster
    python -m ridepulse.compose_acl write /acl/users.acl --owner 999:999   # compose's redis-acl

Passwords come from the environment: `RIDEPULSE_REDIS_PASSWORD` (the operator, user `default`)
and `RIDEPULSE_REDIS_PASSWORD_<SERVICE>` (e.g. `_MATCHING_GEO`), the same variables each
service's `RIDEPULSE_REDIS_URL` is built from. The file holds their SHA-256 hashes only and
is created 0600, owned by the server's uid (docs/security.md)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from ridepulse.acl import SERVICE_GRANTS, acl_file_text
from ridepulse.auth import write_private

OPERATOR_PASSWORD_ENV = "RIDEPULSE_REDIS_PASSWORD"


def password_env(service: str) -> str:
    return f"{OPERATOR_PASSWORD_ENV}_{service.upper().replace('-', '_')}"


# What `--cluster` adds: the profile, and every service's URL pointed at the cluster (any node
# seeds the client; docker-compose.yml builds each URL from these two and the user's password).
CLUSTER_ENV = {
    "COMPOSE_PROFILES": "cluster",
    "RIDEPULSE_REDIS_SCHEME": "redis+cluster",
    "RIDEPULSE_REDIS_ADDRESS": "valkey-1:6379",
}


def fresh_env(cluster: bool = False) -> str:
    """Lines of a `.env` with a new signing secret and new passwords (URL-safe)."""
    lines = [
        f"RIDEPULSE_SECRET={secrets.token_urlsafe(48)}",
        f"{OPERATOR_PASSWORD_ENV}={secrets.token_urlsafe(24)}",
    ]
    lines += [f"{password_env(s)}={secrets.token_urlsafe(24)}" for s in SERVICE_GRANTS]
    if cluster:
        lines += [f"{name}={value}" for name, value in CLUSTER_ENV.items()]
    return "\n".join(lines) + "\n"


def _from_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{name} is not set: see `python -m ridepulse.compose_acl env`")
    return value


def write(path: Path, owner: tuple[int, int] | None, prefix: str) -> None:
    operator = _from_env(OPERATOR_PASSWORD_ENV)
    passwords = {s: _from_env(password_env(s)) for s in SERVICE_GRANTS}
    write_private(path, acl_file_text(operator, passwords, prefix))
    if owner is not None:
        os.chown(path, *owner)  # the server runs as its own uid; the mode stays 0600


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ridepulse.compose_acl")
    sub = parser.add_subparsers(dest="action", required=True)
    env = sub.add_parser("env", help="print a .env with a fresh secret and passwords")
    env.add_argument("--cluster", action="store_true", help="run on the cluster profile")
    env.add_argument(
        "--out",
        type=Path,
        help="write it here, 0600 from creation (a shell redirect makes it with your umask)",
    )
    writer = sub.add_parser("write", help="write the ACL file from the environment")
    writer.add_argument("path", type=Path)
    writer.add_argument("--owner", help="uid:gid that will own the file (the server's)")
    args = parser.parse_args(argv)
    if args.action == "env":
        text = fresh_env(cluster=args.cluster)
        if args.out is None:
            sys.stdout.write(text)
        elif args.out.exists():
            parser.error(f"{args.out} exists: its secrets would be replaced; move it first")
        else:
            write_private(args.out, text)
        return
    owner = tuple(int(part) for part in args.owner.split(":")) if args.owner else None
    prefix = os.environ.get("RIDEPULSE_KEY_PREFIX", "rp")
    write(args.path, owner, prefix)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
