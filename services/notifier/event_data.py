"""Reading values out of a review event's `data` (an open JSON object, so anything may be there): what the mail,
notice and chat renderers share. Pure."""

from __future__ import annotations

from datetime import UTC, datetime


def text(value: object) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def instant(value: object) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (a naive one is taken as UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
