"""Close reasons cut to the 123 bytes a close frame holds (ridepulse/ws_close.py)."""

from __future__ import annotations

from ridepulse.ws_close import MAX_CLOSE_REASON_BYTES, close_reason


def test_a_short_reason_is_kept_whole() -> None:
    assert close_reason("origin not allowed") == "origin not allowed"
    assert close_reason("é" * 61) == "é" * 61  # 122 bytes


def test_a_long_reason_is_cut_by_bytes_and_never_inside_a_character() -> None:
    for text in ("é" * 80, "x" + "é" * 80, "€" * 50, "🚕" * 40, "a" * 500):
        cut = close_reason(text)
        assert len(cut.encode()) <= MAX_CLOSE_REASON_BYTES, (text[:5], len(cut.encode()))
        assert text.startswith(cut) and len(cut.encode()) > MAX_CLOSE_REASON_BYTES - 4
