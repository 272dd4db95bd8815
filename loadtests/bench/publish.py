"""How every bench command ends: the run's JSON and its page written side by side (the page
keeping its hand-written parts), a line saying so, and the command the page names."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench.measure import say

Render = Callable[[dict[str, Any], str], str]  # (results, the current page) → the new page
JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def command_line(module: str, argv: Sequence[str]) -> str:
    """`python -m MODULE ARGV…`, quoted as a shell would need it."""
    return shlex.join(["python", "-m", module, *argv])


def publish(results: dict[str, Any], json_path: Path | None, page: Path, render: Render) -> None:
    """`results` as JSON at `json_path` (None: only the page) and `page` re-rendered from them."""
    page.parent.mkdir(parents=True, exist_ok=True)
    written = [page]
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(results, option=JSON_OPTIONS))
        written.append(json_path)
    page.write_text(render(results, page.read_text() if page.exists() else ""))
    say("wrote " + " and ".join(str(path) for path in written))
