"""One platform per data dir: a second `up`, `redis` or `cluster up` on a directory in use is
refused with the holder's pid, and a holder that dies, even by SIGKILL, frees it at once."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ridepulse import cli
from ridepulse.data_dir_lock import DataDirInUse, holding
from ridepulse.redis_server import free_port

HOLD = """
import sys, time
from pathlib import Path
from ridepulse.data_dir_lock import holding
with holding(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def held_elsewhere(where: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding `where`'s lock until the block ends (or the test kills it)."""
    where.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(where)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    with holding(tmp_path):
        busy = pytest.raises(DataDirInUse, match=r"in use by a running ridepulse \(pid \d+\)")
        with busy, holding(tmp_path):
            pass
    with holding(tmp_path):  # released on the way out
        pass


def test_a_killed_holder_frees_the_dir(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path) as holder:
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"), holding(tmp_path):
            pass
        holder.kill()  # SIGKILL: no cleanup of its own runs
        holder.wait()
        with holding(tmp_path):
            pass


@pytest.mark.parametrize(
    ("command", "held"),
    [
        (["up", "--no-sim"], "."),
        (["up", "--no-sim", "--cluster"], "cluster"),  # where `cluster up` keeps its nodes
        (["redis"], "."),
        (["cluster", "up"], "."),
    ],
)
def test_commands_refuse_a_dir_in_use(
    never_started: None, tmp_path: Path, command: list[str], held: str
) -> None:
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    args = [*command, "--data-dir", str(tmp_path), *(ports if command[0] == "up" else [])]
    where = (tmp_path / held).resolve()
    with held_elsewhere(where) as holder:
        result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"error: the data dir {tmp_path if held == '.' else where} is in use by a running "
        f"ridepulse (pid {holder.pid}): stop that one first, or give this one another --data-dir\n"
    )
