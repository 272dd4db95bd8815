"""One platform per data dir. Two embedded servers on one AOF directory would interleave their
writes (a 202's fsync would no longer mean the ride is on disk), and the second to stop would
delete the first one's `redis.url`, hiding it from `ridepulse status`.

`ridepulse up`, `ridepulse redis` and `ridepulse cluster up` hold an exclusive flock on
`<data dir>/lock` while they run; the kernel drops it when the process ends, however it ends,
so a crashed platform never leaves the directory locked."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class DataDirInUse(Exception):
    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir, self.holder = data_dir, holder
        who = f"pid {holder}" if holder.isdigit() else "another process"
        super().__init__(f"the data dir {data_dir} is in use by a running ridepulse ({who})")


@contextlib.contextmanager
def holding(data_dir: Path) -> Iterator[None]:
    """The data dir's lock, for as long as the block runs; DataDirInUse if someone has it."""
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(data_dir, os.pread(fd, 32, 0).decode(errors="replace")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
