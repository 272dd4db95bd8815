"""structlog configured once per process: one event per line, keys not prose.

JSON wherever a program reads the lines (a pipe, a log file, `--log-format json`); coloured
`event key=value` lines only when a person watches the terminal (`auto` and stderr is a TTY), so
the first minute of `make demo` reads as prose and every service's log file stays parseable.

A log line that cannot be written (the log disk full, a closed pipe) is dropped and counted
(`rp_log_write_errors_total`), never raised into the code that logged it, as `logging.Handler`
does: a full disk answered API calls with a plain-text 500 and ended ingest's heartbeat loop for
good. Once a line gets through again, one `log.lines_lost` line says how many were dropped.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Literal, TextIO

import structlog
from prometheus_client import Counter
from structlog.typing import Processor

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

LOG_WRITE_ERRORS = Counter(
    "rp_log_write_errors_total", "Log lines dropped: writing or flushing them failed"
)


class _Lost:
    """Lines dropped since the last one written, for the process (every logger shares it)."""

    lock = threading.Lock()
    count = 0


class SafePrintLogger(structlog.PrintLogger):
    """structlog's PrintLogger, but a line it cannot write is counted and dropped."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except Exception:  # ENOSPC, EPIPE, a closed stream: the log must not take the caller down
            LOG_WRITE_ERRORS.inc()
            with _Lost.lock:
                _Lost.count += 1
            return
        if _Lost.count:
            self._note_recovery()

    def _note_recovery(self) -> None:
        with _Lost.lock:
            lost, _Lost.count = _Lost.count, 0
        if lost:  # through the configured processors, so it reads like every other line
            structlog.get_logger().warning("log.lines_lost", lost=lost)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class SafePrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> SafePrintLogger:
        return SafePrintLogger(self._file)


def chosen_format(log_format: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """`auto` is console on a terminal and JSON anywhere else; the other two are what they say."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return "console" if isatty is not None and isatty() else "json"
    return log_format


def renderer(fmt: Literal["json", "console"]) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=True)
    return structlog.processors.JSONRenderer()


def configure_logging(service: str, level: str = "info", log_format: LogFormat = "auto") -> None:
    stream = sys.stderr
    fmt = chosen_format(log_format, stream)
    logging.basicConfig(format="%(message)s", stream=stream, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # JSON carries the traceback as a string field; the console renderer prints it itself.
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=SafePrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
