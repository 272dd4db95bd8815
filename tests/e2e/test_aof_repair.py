"""docs/operations.md, 'Recovering from a corrupt AOF': a server that cannot load its AOF makes
the start fail with a line naming the bad file and the repair command, and that command brings
the server back with every write before the corruption."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import orjson
import psutil
import pytest

from ridepulse.data_dir_lock import holding
from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import EmbeddedRedis
from tests.support.processes import ON_CLUSTER, RIDEPULSE, Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

ENTRIES = 100
BAD_ENTRY = 60  # the XADD whose command header is broken: entries 0..59 survive the repair
INCR = "appendonlydir/appendonly.aof.1.incr.aof"


def _env() -> dict[str, str]:
    """This environment without any RIDEPULSE_ setting (the command's own defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_")}


def _corrupt_data_dir(data_dir: Path) -> Path:
    """A data dir whose embedded server wrote ENTRIES stream entries, then had the `*` opening
    the XADD of entry BAD_ENTRY turned into `#` (as a torn or overwritten block would)."""
    server = EmbeddedRedis(data_dir / "redis").start()
    try:
        client = connect_sync(server.url)
        for i in range(ENTRIES):
            client.xadd("orders", {"i": str(i)})
        client.waitaof(1, 0, 5000)
        client.close()
    finally:
        server.stop()
    incr = data_dir / "redis" / INCR
    raw = bytearray(incr.read_bytes())
    # command headers: a `*` at the start of a line (arguments start with `$`); the first is
    # the SELECT, then one XADD per entry
    headers = [i for i in range(len(raw)) if raw[i] == ord("*") and (i == 0 or raw[i - 1] == 10)]
    assert len(headers) == ENTRIES + 1, f"expected SELECT + {ENTRIES} XADDs, saw {len(headers)}"
    raw[headers[BAD_ENTRY + 1]] = ord("#")
    incr.write_bytes(bytes(raw))
    (data_dir / "redis" / "valkey.log").unlink(missing_ok=True)
    return incr


def _ridepulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RIDEPULSE, *args], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )


def test_a_corrupt_aof_fails_the_start_naming_the_file_and_the_repair(tmp_path: Path) -> None:
    """`ridepulse redis` said only "empty log": Valkey's reason is in its own log, not in the
    stdout the supervisor read."""
    data_dir = tmp_path / "data"
    incr = _corrupt_data_dir(data_dir)
    ended = _ridepulse("redis", "--data-dir", str(data_dir))
    assert ended.returncode == 1, ended
    line = ended.stderr.strip().splitlines()[-1]
    assert str(incr.resolve()) in line, line
    assert f"ridepulse repair-aof --data-dir {data_dir}" in line, line
    assert "empty log" not in line


def test_repair_aof_restarts_the_server_with_the_writes_before_the_corruption(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    incr = _corrupt_data_dir(data_dir)
    corrupt = incr.read_bytes()

    with holding(data_dir):  # as a running `ridepulse up` or `ridepulse redis` holds it
        refused = _ridepulse("repair-aof", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "in use" in refused.stderr, refused
    assert incr.read_bytes() == corrupt, "repaired under a running server"

    repaired = _ridepulse("repair-aof", "--data-dir", str(data_dir))
    assert repaired.returncode == 0, repaired
    assert f"truncated {incr}" in repaired.stdout, repaired.stdout
    (backup,) = (data_dir / "redis").glob("appendonlydir.bak-*")
    assert (backup / incr.name).read_bytes() == corrupt
    assert str(backup) in repaired.stdout
    assert len(incr.read_bytes()) < len(corrupt)

    server = EmbeddedRedis(data_dir / "redis").start()
    try:
        client = connect_sync(server.url)
        kept = [(fields or {}).get(b"i") for _, fields in client.xrange("orders") or []]
        client.close()
    finally:
        server.stop()
    assert kept == [str(i).encode() for i in range(BAD_ENTRY)], kept


@pytest.mark.skipif(ON_CLUSTER, reason="the embedded single server's AOF")
def test_up_with_a_corrupt_aof_logs_the_file_and_the_repair(tmp_path: Path) -> None:
    """`ridepulse up` logged `platform.start_failed` "service valkey exited during start: empty
    log"."""
    data_dir = tmp_path / "data"
    incr = _corrupt_data_dir(data_dir)
    platform = Platform(data_dir, "--no-sim")
    try:
        code = platform.process.wait(60)
    finally:
        platform.stop()
    assert code == 1, platform.tail()
    (failed,) = platform.log_events("platform.start_failed")
    assert str(incr.resolve()) in failed["error"], failed
    assert "ridepulse repair-aof --data-dir" in failed["error"], failed


def _died_lines(log: Path) -> list[dict[str, object]]:
    lines = log.read_text(errors="replace").splitlines()
    return [orjson.loads(x) for x in lines if x.startswith("{") and '"service.died"' in x]


def test_a_server_crash_looping_on_a_corrupt_aof_logs_why_at_each_death(tmp_path: Path) -> None:
    """The AOF goes bad under a running server, which is then killed: the restarts crash-loop,
    and each `service.died` said only `exit_code 1`."""
    data_dir, out, err = tmp_path / "data", tmp_path / "redis.out", tmp_path / "redis.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        command = subprocess.Popen(
            [RIDEPULSE, "redis", "--data-dir", str(data_dir)],
            stdout=stdout,
            stderr=stderr,
            env=_env(),
            start_new_session=True,
        )
    try:
        wait_until_sync(lambda: out.read_text().startswith("redis://"), timeout_s=30, what="URL")
        client = connect_sync(out.read_text().strip())
        for i in range(ENTRIES):
            client.xadd("orders", {"i": str(i)})
        client.waitaof(1, 0, 5000)
        client.close()
        incr = data_dir / "redis" / INCR
        raw = bytearray(incr.read_bytes())
        raw[raw.index(b"\r\n*", len(raw) // 2) + 2] = ord("#")
        incr.write_bytes(bytes(raw))
        (server,) = psutil.Process(command.pid).children()
        server.kill()
        explained = wait_until_sync(
            lambda: [d for d in _died_lines(err) if d.get("exit_code") == 1],
            timeout_s=30,
            what="a death of the restarted server",
        )
        reason = str(explained[0].get("reason"))
        assert str(incr.resolve()) in reason, explained[0]
        assert f"ridepulse repair-aof --data-dir {data_dir}" in reason, explained[0]
    finally:
        command.send_signal(signal.SIGTERM)
        try:
            command.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()
