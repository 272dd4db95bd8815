"""structlog configured once per process: one event per line, keys not prose.

JSON wherever a program reads the lines (a pipe, a log file, `--log-format json`); coloured
`event key=value` lines only when a person watches the terminal (`auto` and stderr is a TTY), so
the first minute of `make demo` reads as prose and every service's log file stays parseable.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import Processor

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")


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
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
