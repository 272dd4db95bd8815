"""The README's settings table lists every setting, so the documented knobs never drift."""

from __future__ import annotations

import re
from pathlib import Path

from annotated_types import Ge

from ridepulse.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    missing = [
        f"RIDEPULSE_{n.upper()}"
        for n in Settings.model_fields
        if f"`RIDEPULSE_{n.upper()}`" not in text
    ]
    assert not missing, f"add these to the README settings table: {missing}"


def _as_documented(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_readme_gives_each_settings_true_default() -> None:
    """A default the table misstates is a broken promise: a user tunes from the wrong number."""
    rows = re.findall(r"^\| `RIDEPULSE_(\w+)` \| `([^`]*)` \|", README.read_text(), re.MULTILINE)
    assert len(rows) >= len(Settings.model_fields), "the settings table has moved or shrunk"
    wrong = {
        name: (documented, _as_documented(Settings.model_fields[name.lower()].default))
        for name, documented in rows
        if name.lower() in Settings.model_fields
        and _normal(documented) != _as_documented(Settings.model_fields[name.lower()].default)
    }
    assert not wrong, f"README default → true default: {wrong}"


def _normal(documented: str) -> str:
    text = documented.lower() if documented.lower() in ("true", "false") else documented
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else str(number)


def test_the_table_says_what_0_means_wherever_0_is_allowed() -> None:
    """The README promises it: a 0 that turns a limit off and a 0 that means "at once" read
    alike, and a user cannot tell them apart from the name."""
    rows = dict(
        re.findall(r"^\| `RIDEPULSE_(\w+)` \| `[^`]*` \| (.*) \|$", README.read_text(), re.M)
    )
    silent = [
        name
        for name, field in Settings.model_fields.items()
        if any(isinstance(bound, Ge) and bound.ge == 0 for bound in field.metadata)
        and not re.search(r"(?<![\d.,])0(?![\d.,])", rows.get(name.upper(), ""))
    ]
    assert not silent, f"say what 0 means in the README rows of: {silent}"
