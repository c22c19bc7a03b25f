"""Values said in words for people: durations, ISO 8601 periods, reason codes. Pure."""

from __future__ import annotations

import re

_PERIOD = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
_CAPITALS = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ACRONYMS = {"json": "JSON", "utf8": "UTF-8", "id": "id"}


def _count(amount: int, unit: str) -> str:
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def duration(seconds: float | None) -> str:
    """`93784` → `1 day 2 hours`: the two largest units, rounded down; None → `no data yet`."""
    if seconds is None:
        return "no data yet"
    left = max(0, round(seconds))
    if left == 0:
        return "under a second" if seconds > 0 else "0 seconds"
    parts: list[str] = []
    for unit, size in _UNITS:
        if left >= size and len(parts) < 2:
            parts.append(_count(left // size, unit))
            left %= size
        elif parts:
            break  # `1 day 5 seconds` would mislead: stop at the first empty unit after the largest
    return " ".join(parts)


def period(text: str) -> str:
    """An ISO 8601 duration as pydantic writes it (`P30D`, `PT12H`, `P1DT2H`) in words; other text as given."""
    match = _PERIOD.match(text)
    if match is None or text in ("P", "PT"):
        return text
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    seconds = (
        parts.get("weeks", 0) * 7 * 86400
        + parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    return duration(seconds)


def reason(kind: str) -> str:
    """A rejection kind (`UnknownType`, `smits.InvalidJson`) as words: `unknown type`, `invalid JSON`."""
    bare = kind.removeprefix("smits.")
    words = _CAPITALS.sub(" ", bare).split(" ")
    return " ".join(
        _ACRONYMS.get(word.lower(), word if word.isupper() and len(word) > 1 else word.lower()) for word in words
    )
