"""The "Follow one ride" walk in docs/architecture.md names real files and functions: a rename
that would leave a newcomer at a dead end fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("ridepulse", "ingest", "matching", "eta", "pricing", "dashboard")


def walk_section() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## Follow one ride")
    return text[start : text.index("\n## ", start + 1)]


def product_files() -> dict[str, Path]:
    files = [p for top in PRODUCT for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".lua")]
    return {p.name: p for p in files}


def test_every_file_the_walk_names_exists() -> None:
    names = re.findall(r"`([\w/]+\.(?:py|lua))`", walk_section())
    assert len(names) > 20
    by_name = product_files()
    for name in names:
        assert (ROOT / name).exists() or name in by_name, name


def test_every_function_the_walk_names_is_defined_where_it_says() -> None:
    section = walk_section()
    pairs = re.findall(r"`([\w/]+\.py)` `([\w.]+)`", section)
    assert len(pairs) > 15
    by_name = product_files()
    for path, dotted in pairs:
        file = ROOT / path if (ROOT / path).exists() else by_name[path]
        for name in dotted.split("."):  # Class.method: both are defined in the file
            pattern = rf"^\s*(?:async def|def|class) {name}\b"
            assert re.search(pattern, file.read_text(), re.M), (path, name)


def test_the_walk_says_which_row_and_script_write_ride_requested() -> None:
    section = walk_section()
    assert '`"request"` of `TRANSITIONS`' in section and "`request_ride.lua`" in section
    state = (ROOT / "ridepulse/rides/state.py").read_text()
    assert re.search(r'_row\("request", \(\), "requested", "ride.requested"', state)
    assert "emit(A" in (ROOT / "ridepulse/rides/request_ride.lua").read_text()
