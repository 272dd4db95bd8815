"""docs/security.md matches the code where it states numbers, names and users."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.access import SESSION_COOKIE
from dashboard.service import MAX_CLIENT_MESSAGE_BYTES
from ingest.deps import MAX_BODY_BYTES
from ingest.routes_driver_ws import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from ingest.routes_telemetry import PING_BODY_LIMIT
from ridepulse.acl import SERVICE_GRANTS
from ridepulse.auth import DASHBOARD_LINK_TTL_S, DASHBOARD_SESSION_TTL_S, DEFAULT_TTL_S
from ridepulse.errors import UnsupportedEncoding
from ridepulse.http_head import MAX_HEAD_BYTES, TOO_LARGE
from ridepulse.settings import Settings
from ridepulse.ws_cap import CAP_RETRY_AFTER_S
from ridepulse.ws_expiry import TOKEN_EXPIRED

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text()


def _section(title: str) -> str:
    return DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_lifetimes_cookie_and_close_code_are_the_codes_own() -> None:
    lifetimes = _section("Token audiences and lifetimes")
    assert f"**{DASHBOARD_LINK_TTL_S // 60} minutes**" in lifetimes
    assert f"| {DASHBOARD_SESSION_TTL_S // 3600} hours |" in lifetimes
    assert f"{DEFAULT_TTL_S // 3600} hours by default" in lifetimes
    assert f"`{SESSION_COOKIE}`" in lifetimes
    assert f"**{TOKEN_EXPIRED}**" in lifetimes


def test_the_websocket_caps_state_the_settings_defaults_and_the_retry_after() -> None:
    caps = _section("WebSocket caps")
    assert f"`Retry-After: {CAP_RETRY_AFTER_S}`" in caps
    for name in ("driver_ws_per_token", "dashboard_ws_per_token"):
        default = Settings.model_fields[name].default
        assert f"| `RIDEPULSE_{name.upper()}` | {default} |" in caps, f"{name}: {default}"
    dashboard_default = Settings.model_fields["dashboard_ws_per_token"].default
    assert f"**The dashboard's default, {dashboard_default}.**" in caps
    ping_s = Settings.model_fields["ws_ping_s"].default
    assert f"`RIDEPULSE_WS_PING_S`, {ping_s:g} s," in " ".join(caps.split())
    assert f"so within {2 * ping_s:g} s)" in caps, "a vanished peer: a ping, then as long again"


def test_the_request_head_cap_and_its_refusal_are_the_codes_own() -> None:
    heads = _section("Request heads and bodies")
    assert f"**{MAX_HEAD_BYTES // 1024} KiB**" in heads
    assert f"HTTP **{TOO_LARGE}**" in heads
    timeout_s = Settings.model_fields["http_head_timeout_s"].default
    assert f"`RIDEPULSE_HTTP_HEAD_TIMEOUT_S` (**{timeout_s:g} s**)" in " ".join(heads.split())
    assert "head **and body**" in heads and "`Connection: close`" in heads


def test_the_body_and_frame_limits_are_the_codes_own() -> None:
    bodies = " ".join(_section("Request bodies").split())
    assert f"**{PING_BODY_LIMIT // 1024} KiB** for one ping" in bodies
    assert f"**{MAX_BODY_BYTES // 2**20} MiB** for a fleet's batch" in bodies
    assert f"message over {MAX_MESSAGE_BYTES // 1024} KiB" in bodies
    assert f"a frame over **{MAX_FRAME_BYTES // 1024} KiB**" in bodies
    assert f"frame over {MAX_CLIENT_MESSAGE_BYTES // 1024} KiB" in bodies
    refused = UnsupportedEncoding("")
    assert f"**{refused.status}** (`{refused.code}`" in bodies


def test_every_redis_user_has_a_row_and_no_row_is_stale() -> None:
    rows = re.findall(r"^\| `([\w-]+)` \|", _section("Redis users"), re.M)
    assert set(rows) == {*SERVICE_GRANTS, "default"}


def test_every_row_lists_the_streams_that_user_may_append_to() -> None:
    section = _section("Redis users")
    for user, grant in SERVICE_GRANTS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{user}` |"))
        appends = row.rsplit("|", 2)[-2]
        for stream in grant.appends:
            assert f"`{stream}`" in appends, f"{user}: {stream} missing from its row"


def test_the_compose_knobs_it_names_exist() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for name in ("RIDEPULSE_PUBLISH_ADDR", "RIDEPULSE_VALKEY_UID", "RIDEPULSE_REDIS_PASSWORD"):
        assert name in _section("Docker Compose") and f"${{{name}" in compose


def test_every_command_a_row_names_is_granted_to_that_user() -> None:
    """`MGET` in the dashboard's row, never granted, is how a stale row shows."""
    section = _section("Redis users")
    for user, grant in SERVICE_GRANTS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{user}` |"))
        named = re.findall(r"`([A-Z][A-Z ]*[A-Z])`", row.split("|")[2])
        assert named, f"{user}: no command named in its row"
        for command in named:
            wanted = command.lower().replace(" ", "|")
            assert any(c == wanted or c.startswith(f"{wanted}|") for c in grant.commands) or any(
                c == command.lower() for c, _ in grant.scoped
            ), f"{user}: its row names {command}, which it is not granted"
