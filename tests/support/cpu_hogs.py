"""`pytest --cpu-hogs N`: the suite on a machine made slower by N busy processes alongside it.

A test that passes on a quiet machine and fails on a loaded one depends on the machine's speed
(a timer that lapses, a premise that a step finishes first), and CI machines are often slower
than the one the test was written on: two hogs on two cores halve what the suite gets. The hogs
run at normal priority, one process each, and stop with the session (or when their parent
dies: they poll it)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.support.processes import stop_children

POLL_EVERY = 200_000  # loop turns between checks that the session still wants the hog


def spin(stop: Any, parent_pid: int) -> None:
    while not stop.is_set() and os.getppid() == parent_pid:
        for _ in range(POLL_EVERY):
            pass


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-hogs",
        type=int,
        default=0,
        metavar="N",
        help="run the tests with N busy processes alongside (a slower machine); 0 = none",
    )


@contextlib.contextmanager
def running_hogs(count: int) -> Iterator[Sequence[multiprocessing.process.BaseProcess]]:
    """`count` busy processes while the block runs; all stopped after it."""
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    hogs = [spawn.Process(target=spin, args=(stop, os.getpid()), daemon=True) for _ in range(count)]
    for hog in hogs:
        hog.start()
    try:
        yield hogs
    finally:
        stop_children(stop, hogs, timeout_s=10)


@pytest.fixture(scope="session", autouse=True)
def cpu_hogs(request: pytest.FixtureRequest) -> Iterator[int]:
    count: int = request.config.getoption("--cpu-hogs")
    with running_hogs(count):
        yield count
