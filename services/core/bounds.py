"""Bounding values from outside before they reach a bounded column or a Kafka record (one place).

A value over its bound is cut and ends with `TRUNCATED`, so a reader sees that it was cut; NUL (which no
PostgreSQL text column holds) and lone surrogates (which UTF-8 cannot encode) are escaped, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import String
from sqlalchemy.sql.schema import Table

from services.core.observability import scrub

TRUNCATED = "…[truncated]"
ERROR_MAX_CHARS = 2000
"""Longest error text kept for operators (parked records and partitions, readiness, the CLI)."""


def storable(text: str) -> str:
    """`text` with NUL and lone surrogates escaped (`\\x00`, `\\udc80`), so every database and UTF-8 take it."""
    if text.isascii() and "\x00" not in text:
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def bounded(text: str, limit: int) -> str:
    """`text` made storable and cut to at most `limit` characters, ending with the marker when cut."""
    text = storable(text)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED[:limit]


def bounded_utf8(text: str, limit: int) -> bytes:
    """`text` as UTF-8 of at most `limit` bytes (a Kafka header value), ending with the marker when cut."""
    encoded = storable(text).encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    marker = TRUNCATED.encode("utf-8")
    head = encoded[: max(0, limit - len(marker))].decode("utf-8", "ignore").encode("utf-8")  # whole characters
    return head + marker if len(head) + len(marker) <= limit else head


def error_text(text: str) -> str:
    """An error as stored and shown to operators: no quoted row values, storable, bounded."""
    return bounded(scrub(text), ERROR_MAX_CHARS)


def describe(error: BaseException) -> str:
    """An exception as operators see it (its class and message), via `error_text`."""
    return error_text(f"{type(error).__name__}: {error}")


def fit_columns(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values with every string bounded by its column's length (text columns: made storable only)."""
    fitted = dict(values)
    for name, value in values.items():
        if not isinstance(value, str) or name not in table.c:
            continue
        column_type = table.c[name].type
        length = column_type.length if isinstance(column_type, String) else None
        fitted[name] = bounded(value, length) if length is not None else storable(value)
    return fitted
