"""The correlation flow's reads and writes, set-based: a batch of triggers costs a fixed number of statements
whatever its size (measured by the bench, `BENCHMARKS.md`). Never commits.

Writes go through `persistence_bulk` (one statement per table on PostgreSQL). Queries that would run per trigger
(the threshold counts, the waiting triggers a new review takes) are asked once for the whole batch."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import is_postgres, table_of
from services.strategy_engine.persistence import DecidedTriggerRow, ReviewRow, visible_to
from services.strategy_engine.persistence_bulk import array, update_by_id

_REVIEWS = table_of(ReviewRow)
_TRIGGERS = table_of(DecidedTriggerRow)


@dataclass(kw_only=True, slots=True)
class CollectingReview:
    """A review collecting triggers, as one batch reads and changes it: its identity, what its events carry,
    and the columns correlation moves (`open_key`, the trigger times, the event sequence)."""

    id: uuid.UUID
    correlation_key: str
    open_key: str | None
    category: str
    severity: str
    scope: str | None
    restricted: bool
    first_trigger_at: datetime
    last_trigger_at: datetime
    event_sequence: int


@dataclass(kw_only=True, slots=True, frozen=True)
class WaitingTrigger:
    """A stored trigger no review has taken yet (recorded below a threshold)."""

    id: int
    policy_id: str
    correlation_key: str
    occurred_at: datetime
    source: str
    event_id: str
    category: str
    severity: str
    subject: str


@dataclass(kw_only=True, slots=True, frozen=True)
class Window:
    """Triggers of one policy and key between two times (both included): what a threshold counts."""

    policy_id: str
    key: str
    start: datetime
    end: datetime


async def plan_for_parameters(session: AsyncSession) -> None:
    """Plan each of this transaction's statements for its own parameters (PostgreSQL). A prepared statement run
    often gets a generic plan, chosen once, possibly while its tables were still small: the lookup of a batch's
    known triggers kept one that compared every stored trigger with each of the batch's 500 ids (the bench:
    378 ms a batch at 20,000 stored triggers, more than all the batch's other statements together)."""
    if is_postgres(session):
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


_COLLECTING = (
    _REVIEWS.c.id,
    _REVIEWS.c.correlation_key,
    _REVIEWS.c.open_key,
    _REVIEWS.c.category,
    _REVIEWS.c.severity,
    _REVIEWS.c.scope,
    _REVIEWS.c.restricted,
    _REVIEWS.c.first_trigger_at,
    _REVIEWS.c.last_trigger_at,
    _REVIEWS.c.event_sequence,
)


async def collecting_reviews(
    session: AsyncSession, keys: Collection[str], *, lock: bool = False, grants: Collection[str] | None = None
) -> dict[str, CollectingReview]:
    """The reviews collecting triggers for `keys`, by key (locked for the transaction when `lock`, in key
    order); with `grants`, only those visible to them."""
    if not keys:
        return {}
    query = select(*_COLLECTING).where(_REVIEWS.c.open_key.in_(sorted(keys))).order_by(_REVIEWS.c.open_key)
    if grants is not None:
        query = query.where(visible_to(grants))
    if lock and is_postgres(session):
        query = query.with_for_update()
    reviews = [CollectingReview(**row._mapping) for row in (await session.execute(query)).all()]
    return {review.correlation_key: review for review in reviews}


async def counts_in_windows(session: AsyncSession, windows: Collection[Window]) -> dict[Window, int]:
    """How many stored triggers fall in each window: one statement for all of them on PostgreSQL."""
    if not windows:
        return {}
    asked = list(windows)
    if not is_postgres(session):
        return {window: await _count_in_window(session, window) for window in asked}
    arrays = {
        "a_policy_id": [w.policy_id for w in asked],
        "a_correlation_key": [w.key for w in asked],
        "a_start": [w.start for w in asked],
        "a_end": [w.end for w in asked],
    }
    rows = (await session.execute(_COUNTS, arrays)).all()
    return {asked[n - 1]: int(count) for n, count in rows}


def _counts() -> Select[int, int]:
    t = _TRIGGERS.c
    given = (
        func.unnest(*(array(name, type_) for name, type_ in _WINDOW_COLUMNS))
        .table_valued(*(name for name, _ in _WINDOW_COLUMNS), with_ordinality="n")
        .render_derived()
    )
    counted = (
        select(func.count())
        .where(
            t.policy_id == given.c.policy_id,
            t.correlation_key == given.c.correlation_key,
            t.occurred_at >= given.c.start,
            t.occurred_at <= given.c.end,
        )
        .scalar_subquery()
    )
    return select(given.c.n, counted)


async def _count_in_window(session: AsyncSession, window: Window) -> int:
    query = select(func.count()).where(
        _TRIGGERS.c.policy_id == window.policy_id,
        _TRIGGERS.c.correlation_key == window.key,
        _TRIGGERS.c.occurred_at >= window.start,
        _TRIGGERS.c.occurred_at <= window.end,
    )
    return int(await session.scalar(query) or 0)


async def waiting_triggers(session: AsyncSession, since: Mapping[tuple[str, str], datetime]) -> list[WaitingTrigger]:
    """Stored triggers of each (policy, key) of `since` that no review has taken, from its time on, in the order
    they were stored."""
    if not since:
        return []
    t = _TRIGGERS.c
    columns = (t.id, t.policy_id, t.correlation_key, t.occurred_at, t.source, t.event_id, t.category, t.severity)
    query = (
        select(*columns, t.subject)
        .where(
            tuple_(t.policy_id, t.correlation_key).in_(list(since)),
            t.review_id.is_(None),
            t.occurred_at >= min(since.values()),
        )
        .order_by(t.id)
    )
    found = [WaitingTrigger(**row._mapping) for row in (await session.execute(query)).all()]
    return [row for row in found if row.occurred_at >= since[(row.policy_id, row.correlation_key)]]


async def update_reviews(session: AsyncSession, changes: Sequence[CollectingReview]) -> None:
    """Store what correlation moved on reviews that existed before this batch: one statement on PostgreSQL."""
    columns: dict[str, list[Any]] = {
        "id": [r.id for r in changes],
        "open_key": [r.open_key for r in changes],
        "last_trigger_at": [r.last_trigger_at for r in changes],
        "event_sequence": [r.event_sequence for r in changes],
    }
    await update_by_id(session, _REVIEWS, columns)


async def link_triggers(session: AsyncSession, links: Mapping[int, uuid.UUID]) -> None:
    """Give stored triggers (by id) to the review that took them."""
    await update_by_id(session, _TRIGGERS, {"id": list(links), "review_id": list(links.values())})


_WINDOW_COLUMNS = (
    ("policy_id", String()),
    ("correlation_key", String()),
    ("start", _TRIGGERS.c.occurred_at.type),
    ("end", _TRIGGERS.c.occurred_at.type),
)
_COUNTS = _counts()
