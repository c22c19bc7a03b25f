"""The board's orders and cursors (pure): a cursor resumes exactly the order it was made for, and a cursor the
API did not make (or one the database could not compare) is refused as a ValueError."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.strategy_engine.board import PageEnd as P
from services.strategy_engine.board import ReviewSort, SortKey, decode, encode, no_due_date

TIMES = st.datetimes(timezones=st.just(UTC)).filter(lambda at: at.year > 1)


def _keys(sort: ReviewSort) -> st.SearchStrategy[SortKey]:
    if sort.key in ("opened_at", "due_at"):
        return TIMES
    if sort.key == "severity":
        return st.integers(min_value=0, max_value=4)
    return st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=600)


@given(data=st.data(), sort=st.sampled_from(ReviewSort), row=st.uuids())
def test_a_cursor_resumes_where_it_was_made(data: st.DataObject, sort: ReviewSort, row: uuid.UUID) -> None:
    position = P(data.draw(_keys(sort)), row)
    assert decode(sort, encode(sort, position)) == position


@pytest.mark.parametrize("sort", list(ReviewSort))
def test_a_cursor_of_one_order_is_refused_by_every_other(sort: ReviewSort) -> None:
    keys: dict[str, SortKey] = {"severity": 3, "title": "t"}
    key = keys.get(sort.key, datetime(2026, 1, 1, tzinfo=UTC))
    cursor = encode(sort, P(key, uuid.uuid4()))
    for other in ReviewSort:
        if other is not sort:
            with pytest.raises(ValueError, match=r"cursor|value"):
                decode(other, cursor)


def _crafted(*parts: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode()


ROW = str(uuid.UUID(int=1))


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        (ReviewSort.TITLE, "garbage"),
        (ReviewSort.TITLE, base64.urlsafe_b64encode(b'["title", "t"]').decode()),  # too few parts
        (ReviewSort.TITLE, _crafted("title", "a\x00b", ROW)),  # NUL: PostgreSQL cannot compare it
        (ReviewSort.TITLE, _crafted("title", 3, ROW)),
        (ReviewSort.TITLE, _crafted("title", "t", "not an id")),
        (ReviewSort.MOST_SEVERE, _crafted("-severity", 2**40, ROW)),  # past the rank (and a 32-bit int)
        (ReviewSort.MOST_SEVERE, _crafted("-severity", True, ROW)),
        (ReviewSort.DUE_FIRST, _crafted("due_at", "2026-01-01T00:00:00", ROW)),  # no zone
        (ReviewSort.DUE_FIRST, _crafted("due_at", "0001-01-01T00:00:00+14:00", ROW)),  # before year 1 in UTC
        (ReviewSort.OLDEST, _crafted("opened_at", "yesterday", ROW)),
    ],
)
def test_a_cursor_the_api_did_not_make_is_refused(sort: ReviewSort, cursor: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode(sort, cursor)


def test_orders_name_their_field_and_direction_and_undated_reviews_sort_last_both_ways() -> None:
    assert [(s.key, s.descending) for s in (ReviewSort.NEWEST, ReviewSort.DUE_FIRST, ReviewSort.TITLE)] == [
        ("opened_at", True),
        ("due_at", False),
        ("title", False),
    ]
    dated = datetime(2026, 1, 1, tzinfo=UTC)
    assert no_due_date(ReviewSort.DUE_FIRST) > dated > no_due_date(ReviewSort.DUE_LAST)
