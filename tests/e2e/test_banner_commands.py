"""The commands `ridepulse up` prints work as printed, from another shell and directory, when
the data dir, the key prefix or the Redis are not the defaults."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from loadtests.platform import clean_env
from ridepulse.auth import verify_token
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The line as a user pastes it, with this venv's `ridepulse` first on PATH and no
    RIDEPULSE_ variable of the test's."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = clean_env(PATH=path)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _banner_commands(text: str) -> tuple[str, str, str]:
    """(status, API token, dashboard link) commands as the banner prints them."""
    [line] = [x for x in text.splitlines() if x.startswith("  status:")]
    status, tokens = line.removeprefix("  status:").split("    tokens: ")
    [link] = [x for x in text.splitlines() if "a new one: " in x]
    link = link.split("a new one: ")[1].removesuffix(")")
    return status.strip(), tokens.strip().replace("<role> <id>", "driver d-1"), link


def test_the_banners_commands_reach_a_platform_on_a_given_redis_and_data_dir(
    tmp_path: Path, redis_url: str
) -> None:
    """`up --data-dir X --redis-url U` printed `ridepulse status`: from another shell it said
    "run ridepulse up first" (no redis.url was written for a given URL, and the default data dir
    was read), and `ridepulse token --dashboard` made a new secret in ./.ridepulse whose link
    the dashboard turned away (303, no cookie)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    data_dir = tmp_path / "my city"  # a space: the printed path is quoted for a shell
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    platform = Platform(
        data_dir, "--no-sim", "--redis-url", redis_url, env={"RIDEPULSE_KEY_PREFIX": prefix}
    )
    try:
        platform.wait_up()
        # README: the given URL (its password in it) is written for other shells, mode 0600
        url_mode = stat.S_IMODE((data_dir / "redis.url").stat().st_mode)
        assert url_mode == 0o600, oct(url_mode)
        status, token, link = _banner_commands(platform.text())
        assert "RIDEPULSE_DATA_DIR=" in status and f"RIDEPULSE_KEY_PREFIX={prefix}" in status

        shown = _shell(status, elsewhere)
        assert "STREAM" in shown.stdout and f"{prefix}:{{sf}}:rides" in shown.stdout, (
            f"{status!r} from another directory: {shown.stdout}{shown.stderr}"
        )

        minted = _shell(token, elsewhere)
        assert minted.returncode == 0, minted.stderr
        assert verify_token(platform.secret, minted.stdout.strip()).subject == "d-1"
        with httpx.Client(base_url=platform.api, timeout=10) as api:
            pinged = api.post(
                "/v1/drivers/d-1/location",
                headers={"Authorization": f"Bearer {minted.stdout.strip()}"},
                json={"lat": 37.7793, "lon": -122.4193},
            )
        assert pinged.status_code == 202, pinged.text

        fresh = _shell(link, elsewhere)
        assert fresh.returncode == 0, fresh.stderr
        opened = httpx.get(
            f"{platform.dashboard}/", params={"token": fresh.stdout.strip()}, timeout=10
        )
        assert opened.status_code == 303 and "set-cookie" in opened.headers, opened.headers
        assert not (elsewhere / ".ridepulse").exists(), "a secret was made where none was asked"
    finally:
        code = platform.stop()
    assert code == 0, platform.tail()
    assert not (data_dir / "redis.url").exists(), "the URL file outlived `up`"
