"""Valkey's lines about an AOF it could not load, explained with the file and its repair."""

from __future__ import annotations

from pathlib import Path

import pytest

from ridepulse.aof import explain_load_failure, repair_command

PREFIX = "12242:M 07 Dec 2026 20:35:29.291 # "


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (
            "Bad file format reading the append only file appendonly.aof.3.incr.aof: make a "
            "backup of your AOF file, then use ./valkey-check-aof --fix <filename.manifest>",
            "Bad file format",
        ),
        (
            "Unexpected end of file reading the append only file appendonly.aof.3.incr.aof. "
            "You can: 1) Make a backup of your AOF file, then use ./valkey-check-aof --fix",
            "Unexpected end of file",
        ),
        (
            "Unrecoverable error reading the append only file appendonly.aof.3.incr.aof: "
            "Input/output error",
            "Unrecoverable error",
        ),
    ],
)
def test_a_bad_aof_line_names_the_file_and_the_repair_command(
    tmp_path: Path, line: str, what: str
) -> None:
    server_dir = tmp_path / "redis"
    explained = explain_load_failure(PREFIX + line, server_dir)
    assert explained is not None
    assert f"{what} in {server_dir / 'appendonlydir' / 'appendonly.aof.3.incr.aof'};" in explained
    assert f"`ridepulse repair-aof --data-dir {tmp_path}`" in explained
    assert "./valkey-check-aof" not in explained  # not shipped: the wheel has valkey-server only


def test_other_lines_are_not_taken_for_a_bad_aof(tmp_path: Path) -> None:
    line = PREFIX + "Failed listening on port 6379 (tcp), aborting."
    assert explain_load_failure(line, tmp_path / "redis") is None


def test_a_cluster_nodes_repair_names_its_directory(tmp_path: Path) -> None:
    node = tmp_path / "cluster" / "node-2"
    assert repair_command(node) == f"ridepulse repair-aof --server-dir {node}"
