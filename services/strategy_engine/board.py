"""The orders `GET /v1/reviews` lists reviews in, and the cursor that resumes each (pure).

Paging is keyset on (sort key, review id) for every order: a cursor holds the sort key and id of the last review
of a page, and the next page starts strictly after it, so a review is neither skipped nor listed twice while
reviews are added or change between pages (one that changes its sort key moves, as in any keyset listing)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import orjson

from services.contracts.triggers import Severity

MAX_QUERY_TEXT = 200
"""The longest free-text search (`q`) accepted."""


class ReviewSort(StrEnum):
    NEWEST = "-opened_at"
    OLDEST = "opened_at"
    DUE_FIRST = "due_at"
    DUE_LAST = "-due_at"
    LEAST_SEVERE = "severity"
    MOST_SEVERE = "-severity"
    TITLE = "title"

    @property
    def key(self) -> str:
        """The field sorted on."""
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


SEVERITY_RANK: dict[str, int] = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}
"""Severities in order; any other value ranks 0 (below low)."""


def no_due_date(sort: ReviewSort) -> datetime:
    """What a review without a due date sorts as: after every dated one, in either direction."""
    return datetime.min.replace(tzinfo=UTC) if sort.descending else datetime.max.replace(tzinfo=UTC)


SortKey = datetime | int | str


@dataclass(frozen=True, slots=True)
class PageEnd:
    """Where a page ended: the sort key and id of its last review."""

    key: SortKey
    id: uuid.UUID


def encode(sort: ReviewSort, position: PageEnd) -> str:
    """An opaque cursor naming `sort`, so it is refused under another one."""
    key = position.key.isoformat() if isinstance(position.key, datetime) else position.key
    return base64.urlsafe_b64encode(orjson.dumps([sort.value, key, str(position.id)])).decode()


def decode(sort: ReviewSort, cursor: str) -> PageEnd:
    """Inverse of `encode`; ValueError for anything `encode` did not make under `sort`."""
    try:
        name, key, row = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError("not a cursor of this listing") from exc
    if name != sort.value:
        raise ValueError(f"a cursor of the {name!r} order, not {sort.value!r}")
    return PageEnd(_key(sort, key), uuid.UUID(str(row)))


def _key(sort: ReviewSort, value: object) -> SortKey:
    """The sort key from a cursor, refused unless the database can compare it (a zone, a small int, no NUL)."""
    if sort.key in ("opened_at", "due_at") and isinstance(value, str):
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("a time without a time zone")
        try:
            return at.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("a time out of range") from exc
    if sort.key == "severity" and type(value) is int and 0 <= value <= max(SEVERITY_RANK.values()):
        return value
    if sort.key == "title" and isinstance(value, str) and "\x00" not in value:
        return value
    raise ValueError(f"not a {sort.key} value")
