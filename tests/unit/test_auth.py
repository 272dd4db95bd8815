"""Token audiences and roles, the `ridepulse token` command, and secret files that are private
from their first byte (docs/security.md)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from ridepulse.auth import (
    DASHBOARD_LINK_TTL_S,
    UnusableSecret,
    mint_dashboard_link,
    mint_token,
    resolve_secret,
    verify_token,
    write_private,
)
from ridepulse.cli import app
from ridepulse.errors import Unauthorized
from ridepulse.settings import Settings

SECRET = "unit-test-secret-0123456789abcdef0123456789abcdef"


def test_each_surface_refuses_the_other_surfaces_tokens() -> None:
    api = mint_token(SECRET, "ops", "ops-1")
    link = mint_dashboard_link(SECRET, "viewer-1")
    assert verify_token(SECRET, api, audience="api").role == "ops"
    assert verify_token(SECRET, link, audience="dashboard").role == "viewer"
    with pytest.raises(Unauthorized, match="audience"):
        verify_token(SECRET, link, audience="api")
    with pytest.raises(Unauthorized, match="audience"):
        verify_token(SECRET, api, audience="dashboard")


def test_a_token_without_an_audience_is_refused() -> None:
    legacy = jwt.encode(
        {"iss": "ridepulse", "sub": "o", "role": "ops", "exp": 2_000_000_000}, SECRET, "HS256"
    )
    with pytest.raises(Unauthorized):
        verify_token(SECRET, legacy)


def test_roles_belong_to_one_audience() -> None:
    with pytest.raises(ValueError, match="not for the dashboard"):
        mint_token(SECRET, "ops", "x", audience="dashboard")
    with pytest.raises(ValueError, match="not for the api"):
        mint_token(SECRET, "viewer", "x")
    forged_role = jwt.encode(
        {"iss": "ridepulse", "aud": "dashboard", "sub": "o", "role": "ops", "exp": 2_000_000_000},
        SECRET,
        "HS256",
    )
    with pytest.raises(Unauthorized, match="role"):
        verify_token(SECRET, forged_role, audience="dashboard")


def test_a_dashboard_link_lives_minutes_and_carries_its_expiry() -> None:
    viewer = verify_token(SECRET, mint_dashboard_link(SECRET, "v"), audience="dashboard")
    claims = jwt.decode(mint_dashboard_link(SECRET, "v"), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == DASHBOARD_LINK_TTL_S == 600
    assert viewer.expires_at == pytest.approx(claims["exp"], abs=2)


def test_the_token_command_mints_api_tokens_unless_asked_for_a_dashboard_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIDEPULSE_SECRET", SECRET)
    runner = CliRunner()
    api = runner.invoke(app, ["token", "driver", "d-1"])
    assert api.exit_code == 0, api.output
    assert verify_token(SECRET, api.output.strip()).subject == "d-1"
    link = runner.invoke(app, ["token", "--dashboard"])
    assert link.exit_code == 0, link.output
    viewer = verify_token(SECRET, link.output.strip(), audience="dashboard")
    assert viewer.role == "viewer"
    assert runner.invoke(app, ["token", "viewer", "v"]).exit_code == 1
    assert runner.invoke(app, ["token", "--dashboard", "ops", "o"]).exit_code == 1


def test_the_token_command_mints_12_hour_tokens_unless_given_a_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README and security.md: an API token lives 12 hours by default, `--ttl-s` otherwise."""
    monkeypatch.setenv("RIDEPULSE_SECRET", SECRET)
    runner = CliRunner()
    for extra, lifetime_s in (([], 12 * 3600), (["--ttl-s", "90"], 90)):
        minted = runner.invoke(app, ["token", "rider", "r-1", *extra])
        assert minted.exit_code == 0, minted.output
        claims = jwt.decode(minted.output.strip(), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == lifetime_s, extra


def test_the_generated_secret_is_0600_in_a_0700_dir_from_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    # A permissive umask must not widen the files: they are born private.
    old = os.umask(0)
    try:
        secret = resolve_secret(Settings(data_dir=data, secret=None))
    finally:
        os.umask(old)
    assert stat.S_IMODE((data / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert resolve_secret(Settings(data_dir=data, secret=None)) == secret


def test_write_private_never_opens_a_wider_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is created with mode 0600 in the open() call itself, and an old file with a
    wider mode is narrowed before the new content is written."""
    modes: list[int] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777) -> int:
        modes.append(mode)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    target = tmp_path / "pw"
    write_private(target, "one")
    assert modes == [0o600]
    target.chmod(0o644)
    write_private(target, "two")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "two"


class _FullDisk:
    """A file handle whose writes fail as on a full disk (ENOSPC)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_a_write_that_fails_leaves_the_old_file_whole_and_nothing_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the secret used to be truncated first, then left at 0 bytes: every later
    command failed on an empty HMAC key. The new text now goes to a file beside it first."""
    target = tmp_path / "secret"
    write_private(target, "the-old-secret-0123456789abcdef-0123456789")
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="No space left"):
        write_private(target, "a-new-secret")
    monkeypatch.undo()
    assert target.read_text() == "the-old-secret-0123456789abcdef-0123456789"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


@pytest.mark.parametrize("stored", ["", "\n", "short"])
def test_a_stored_secret_too_short_to_sign_with_is_refused(tmp_path: Path, stored: str) -> None:
    (tmp_path / "secret").write_text(stored)
    with pytest.raises(UnusableSecret, match="32 at least"):
        resolve_secret(Settings(data_dir=tmp_path, secret=None))


@pytest.mark.parametrize("given", ["x", " " * 40, "x" * 31])
def test_a_secret_setting_too_short_to_sign_with_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="32 characters at least"):
        Settings(secret=given)


def test_a_dashboard_link_says_it_is_a_link_and_carries_an_id_of_its_own() -> None:
    """A link (and `ridepulse token --dashboard`) is `use: link` with a `jti`, which is its
    grant; an API token says nothing of its use and its grant is a digest of its claims."""
    first, second = (
        verify_token(SECRET, mint_dashboard_link(SECRET, "v"), "dashboard") for _ in "ab"
    )
    assert (first.use, second.use) == ("link", "link")
    assert first.grant and first.grant != second.grant, "each link is a grant of its own"
    claims = jwt.decode(mint_dashboard_link(SECRET, "v"), options={"verify_signature": False})
    assert claims["use"] == "link" and len(claims["jti"]) >= 16
    api = verify_token(SECRET, mint_token(SECRET, "ops", "o"))
    assert api.use is None and api.grant.startswith("claims:")
    with pytest.raises(ValueError, match="use"):
        mint_token(SECRET, "viewer", "v", audience="dashboard", use="forever")


def test_the_token_command_mints_dashboard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIDEPULSE_SECRET", SECRET)
    minted = CliRunner().invoke(app, ["token", "--dashboard"])
    assert minted.exit_code == 0, minted.output
    assert verify_token(SECRET, minted.output.strip(), audience="dashboard").use == "link"


def test_the_token_commands_help_states_the_default_lifetimes() -> None:
    """The help text's `[default: …]` read as rich markup vanished from `--help`."""
    shown = CliRunner().invoke(app, ["token", "--help"], env={"COLUMNS": "200"}).output
    assert "[default: 12 h; 10 min with --dashboard]" in shown, shown
