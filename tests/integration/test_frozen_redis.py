"""A frozen Valkey (SIGSTOP here; a network partition looks the same to a client: no reply, no
error) gets HTTP requests their 503 within seconds. Every client had the socket timeout meant
for blocked stream reads (BLOCK + 10 s), so each API call waited ~11 s before its 503 and a fleet
batch 22 s, past a driver's client timeout. Ingest's request clients now time out after the
durable timeout plus a margin (3 s by default), the dashboard's ride read as well.

Real processes (`ridepulse run ingest`, `ridepulse run dashboard`) against a server of this test
alone: the session's shared server is never stopped."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.platform import clean_env
from ridepulse.auth import mint_dashboard_link, mint_token
from ridepulse.redis_server import EmbeddedRedis, free_port
from tests.support.frozen import frozen
from tests.support.processes import RIDEPULSE, run_service
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production-0123456789"
PORT_SETTING = {"ingest": "RIDEPULSE_API_PORT", "dashboard": "RIDEPULSE_DASHBOARD_PORT"}
# RIDEPULSE_DURABLE_TIMEOUT_MS (2 s) + 1 s of margin, and what a loaded CI machine adds; the old
# client gave up after 10.2 s (BLOCK 200 ms + 10 s), far outside it
ANSWER_WITHIN_S = 5.0
RIDE = {"pickup": {"lat": 37.7793, "lon": -122.4193}, "dropoff": {"lat": 37.7599, "lon": -122.4148}}


@contextlib.contextmanager
def running(service: str, own_server: EmbeddedRedis, data_dir: Path) -> Iterator[str]:
    """`ridepulse run <service>` on a free port against `server`; yields its base URL."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{service}.log"
    env = clean_env(
        RIDEPULSE_REDIS_URL=own_server.url,
        RIDEPULSE_KEY_PREFIX=f"t{port}",
        RIDEPULSE_DATA_DIR=str(data_dir),
        RIDEPULSE_SECRET=SECRET,
        RIDEPULSE_HOST="127.0.0.1",
        RIDEPULSE_BLOCK_MS="200",
        RIDEPULSE_LOG_FORMAT="json",
        **{PORT_SETTING[service]: str(port)},
    )
    process: subprocess.Popen[bytes] = run_service(service, env, log_path)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{service} exited: {log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        return False

    try:
        wait_until_sync(answers, timeout_s=30, interval_s=0.1, what=f"{service}'s /healthz")
        yield base
    finally:
        process.kill()
        process.wait(10)


def request_ride(api: str, key: str) -> httpx.Response:
    """A ride for rider `r-<key>` (one open ride per rider), `key` its Idempotency-Key."""
    rider = {"Authorization": f"Bearer {mint_token(SECRET, 'rider', f'r-{key}')}"}
    headers = {**rider, "Idempotency-Key": key}
    return httpx.post(f"{api}/v1/rides", json=RIDE, headers=headers, timeout=30)


def test_a_frozen_server_gets_a_ride_request_its_503_within_seconds(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with running("ingest", own_server, tmp_path / "ingest") as api:
        accepted = request_ride(api, "before")
        assert accepted.status_code == 202, accepted.text
        with frozen(own_server):
            started = time.monotonic()
            refused = request_ride(api, "while-frozen")
            took_s = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.headers.get("Retry-After"), refused.headers
        assert took_s < ANSWER_WITHIN_S, f"the 503 took {took_s:.1f} s"
        again = request_ride(api, "after")  # the server is back: so is the service
        assert again.status_code == 202, again.text


def test_a_frozen_server_gets_a_dashboard_ride_read_its_503_within_seconds(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with running("dashboard", own_server, tmp_path / "dashboard") as dashboard:
        url = f"{dashboard}/api/rides/sf-r-missing?token={mint_dashboard_link(SECRET, 'ops')}"
        assert httpx.get(url, timeout=30).status_code == 404
        with frozen(own_server):
            started = time.monotonic()
            answer = httpx.get(url, timeout=30)
            took_s = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert took_s < ANSWER_WITHIN_S, f"the 503 took {took_s:.1f} s"
        # the same answer as any outage of either service: one code, and when to come back
        assert answer.json()["error"] == "unavailable" and int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "command",
    [["status"], ["deadletters"], ["run", "ingest"], ["run", "dashboard"]],
    ids=["status", "deadletters", "run-ingest", "run-dashboard"],
)
def test_a_command_against_a_frozen_server_ends_with_one_line(
    own_server: EmbeddedRedis, tmp_path: Path, command: list[str]
) -> None:
    """A frozen server accepts the connection and never answers: every command still ends, with
    one line (architecture.md: a wrong URL must not look like a hang). redis-py's default 5 s
    socket timeout is what ends the operator's commands; the services give up after their
    15 s of start-up patience."""
    env = clean_env(
        RIDEPULSE_REDIS_URL=own_server.url,
        RIDEPULSE_DATA_DIR=str(tmp_path / "cli"),
        RIDEPULSE_API_PORT=str(free_port()),
        RIDEPULSE_DASHBOARD_PORT=str(free_port()),
        RIDEPULSE_LOG_FORMAT="json",
    )
    with frozen(own_server):
        started = time.monotonic()
        result = subprocess.run(
            [str(RIDEPULSE), *command], capture_output=True, text=True, timeout=60, env=env
        )
        took_s = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert took_s < 45, f"took {took_s:.0f} s"
