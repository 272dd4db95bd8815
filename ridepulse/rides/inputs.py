"""Caller inputs as the step scripts store them: checked ids, and numbers rounded so the hash
(Python text) and the event (Lua cjson, 14 significant digits) always show the same value."""

from __future__ import annotations

import math
import re

from ridepulse.contracts.events import Point
from ridepulse.errors import InvalidInput

# Ids become parts of key names and of the comma-separated `declined` field.
_ID = re.compile(r"[^\s,{}]{1,128}")
COORD_DIGITS = 7  # ~1 cm
MONEY_DIGITS = 2
SURGE_DIGITS = 3
SECONDS_DIGITS = 1


def checked_id(name: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidInput(
            f"{name} must be 1-128 characters without spaces, commas or braces", field=name
        )
    return value


def number(
    name: str, value: float | None, digits: int, *, minimum: float = 0.0, strict: bool = False
) -> str:
    """Stored text of an optional number ("" for None); InvalidInput if not finite or too small."""
    if value is None:
        return ""
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise InvalidInput(f"{name} must be a finite number {bound} {minimum}", field=name)
    return repr(round(float(value), digits))


def millis(name: str, seconds: float) -> str:
    """A positive duration in whole milliseconds."""
    number(name, seconds, SECONDS_DIGITS + 2, strict=True)
    return str(max(1, round(seconds * 1000)))


def coordinates(point: Point) -> list[str]:
    return [repr(round(point.lat, COORD_DIGITS)), repr(round(point.lon, COORD_DIGITS))]
