"""The README's settings table lists every setting, so the documented knobs never drift."""

from __future__ import annotations

from pathlib import Path

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
