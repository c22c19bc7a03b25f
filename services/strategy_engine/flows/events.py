"""Recording review events: the timeline row and the outbox row, in the caller's transaction.

`event_rows` only builds column values; the `smits_reviews_events_total` counter moves once the caller's
unit of work has committed (`count_after_commit`), so a rolled-back transaction counts nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.db import after_commit, is_postgres
from services.core.observability import REVIEWS
from services.core.outbox import outbox_values
from services.core.tracing import TRACEPARENT, child_of
from services.strategy_engine.errors import ReviewNotFound
from services.strategy_engine.persistence import (
    DecidedTriggerRow,
    EngineOutboxRow,
    ReviewRow,
    TimelineRow,
    visible_review,
)


async def lock_review(session: AsyncSession, review_id: uuid.UUID) -> ReviewRow:
    """The review, locked for this transaction (its event sequence is read-modify-write)."""
    query = select(ReviewRow).where(ReviewRow.id == review_id)
    if is_postgres(session):
        query = query.with_for_update()
    review = await session.scalar(query)
    if review is None:
        raise ReviewNotFound(review_id)
    return review


async def require_visible(session: AsyncSession, review_id: uuid.UUID, grants: Collection[str]) -> ReviewRow:
    """The review if the caller holding `grants` may see it; a hidden one is `ReviewNotFound` exactly as a
    missing one (404, never 403: its existence does not leak). Every route on one review calls this first."""
    review = await visible_review(session, review_id, grants)
    if review is None:
        raise ReviewNotFound(review_id)
    return review


def record_event(
    session: AsyncSession,
    review: ReviewRow,
    type_: ReviewEventType,
    now: datetime,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
) -> ReviewEventV1:
    """Append to the review's timeline and to the outbox (published to `reviews.events`, keyed by review)."""
    event, timeline, outbox = event_rows(review, type_, now, data, traceparent=traceparent)
    session.add(TimelineRow(**timeline))
    session.add(EngineOutboxRow(**outbox))
    count_after_commit(session, [type_])
    return event


def count_after_commit(session: AsyncSession, types: Sequence[ReviewEventType]) -> None:
    """Count review events in `smits_reviews_events_total` once `session`'s unit of work commits."""
    counted = Counter(types)

    def count() -> None:
        for type_, n in counted.items():
            REVIEWS.labels(type_.value).inc(n)

    if counted:
        after_commit(session, count)


def event_rows(
    review: ReviewRow,
    type_: ReviewEventType,
    now: datetime,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
) -> tuple[ReviewEventV1, dict[str, Any], dict[str, Any]]:
    """The review's next event with its timeline and outbox column values (for bulk inserts).

    The outbox record carries a `traceparent` in the trace of what caused the event (e.g. the trigger)."""
    review.event_sequence += 1
    event = ReviewEventV1(
        id=uuid.uuid4(),
        type=type_,
        review_id=review.id,
        sequence=review.event_sequence,
        occurred_at=now,
        data={"review_id": str(review.id), **data},
        category=review.category,
        severity=review.severity,
        scope=review.scope,
        restricted=bool(review.restricted),
    )
    timeline = {
        "id": event.id,
        "review_id": review.id,
        "sequence": event.sequence,
        "type": type_.value,
        "occurred_at": now,
        "data": event.data,
    }
    outbox = outbox_values(
        topic=topics.REVIEWS_EVENTS,
        key=str(review.id).encode(),
        value=orjson.dumps(event.model_dump(mode="json")),
        headers=[
            ("content-type", b"application/json"),
            ("smits-schema", b"ReviewEvent.v1"),
            (TRACEPARENT, child_of(traceparent).encode()),
        ],
        now=now,
    )
    return event, timeline, outbox


def trigger_ref(*, source: str, event_id: str, category: str, severity: str, scope: str) -> dict[str, Any]:
    """How review events name a trigger (its scope under the CloudEvents name, `subject`)."""
    return {"trigger": {"source": source, "id": event_id, "category": category, "severity": severity, "subject": scope}}


def stored_trigger_ref(row: DecidedTriggerRow) -> dict[str, Any]:
    return trigger_ref(
        source=row.source, event_id=row.event_id, category=row.category, severity=row.severity, scope=row.subject
    )


def review_summary(review: ReviewRow) -> dict[str, Any]:
    return {
        "title": review.title,
        "category": review.category,
        "severity": review.severity,
        "state": review.state,
        "owner": review.owner,
        "correlation_key": review.correlation_key,
        "due_at": review.due_at.isoformat() if review.due_at else None,
    }
