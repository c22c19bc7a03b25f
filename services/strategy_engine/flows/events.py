"""Recording review events: the timeline row and the outbox row, in the caller's transaction.

`event_rows` only builds column values; the `smits_reviews_events_total` counter moves once the caller's
unit of work has committed (`count_after_commit`), so a rolled-back transaction counts nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.contracts.reviews import ReviewEventType
from services.core.db import after_commit, is_postgres
from services.core.observability import REVIEWS
from services.core.outbox import OutboxRecord, outbox_values
from services.core.tracing import TRACEPARENT, child_of
from services.strategy_engine.errors import ReviewNotFound
from services.strategy_engine.persistence import (
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


class Sequenced(Protocol):
    """What an event needs of its review: the fields subscribers filter on and the event sequence, which each
    event advances (a `ReviewRow`, or the correlation flow's `CollectingReview`)."""

    event_sequence: int

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def scope(self) -> str | None: ...
    @property
    def restricted(self) -> bool: ...


def record_event(
    session: AsyncSession,
    review: Sequenced,
    type_: ReviewEventType,
    now: datetime,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
) -> None:
    """Append to the review's timeline and to the outbox (published to `reviews.events`, keyed by review)."""
    timeline, record = event_rows(review, type_, now, data, traceparent=traceparent)
    # A mapped row holds `data` as rows read back do (a dict), not as the encoded bytes bulk inserts take.
    session.add(TimelineRow(**{**timeline, "data": _body(review, data)}))
    values = outbox_values(topic=record.topic, key=record.key, value=record.value, headers=record.headers, now=now)
    session.add(EngineOutboxRow(**values))
    count_after_commit(session, [type_])


def count_after_commit(session: AsyncSession, types: Sequence[ReviewEventType]) -> None:
    """Count review events in `smits_reviews_events_total` once `session`'s unit of work commits."""
    counted = Counter(types)

    def count() -> None:
        for type_, n in counted.items():
            REVIEWS.labels(type_.value).inc(n)

    if counted:
        after_commit(session, count)


_HEADERS = [("content-type", b"application/json"), ("smits-schema", b"ReviewEvent.v1")]


def event_rows(
    review: Sequenced,
    type_: ReviewEventType,
    now: datetime,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
) -> tuple[dict[str, Any], OutboxRecord]:
    """The review's next event: the timeline's column values (for bulk inserts) and the record to publish.

    The event's `data` is encoded once: the timeline stores those bytes and the published `ReviewEvent` v1
    embeds them; the record is the JSON `ReviewEventV1(...).model_dump(mode="json")` gives, without building
    the model (a unit test holds the two equal). The outbox record carries a `traceparent` in the trace of what
    caused the event (e.g. the trigger)."""
    review.event_sequence += 1
    event_id = uuid.uuid4()
    review_id = str(review.id)
    encoded = orjson.Fragment(_json({"review_id": review_id, **data}))
    event = {
        "id": event_id,
        "type": type_.value,
        "review_id": review.id,
        "sequence": review.event_sequence,
        "occurred_at": now,
        "data": encoded,
        "category": review.category,
        "severity": review.severity,
        "scope": review.scope,
        "restricted": bool(review.restricted),
    }
    timeline = {
        "id": event_id,
        "review_id": review.id,
        "sequence": review.event_sequence,
        "type": type_.value,
        "occurred_at": now,
        "data": encoded,
    }
    outbox = OutboxRecord(
        topic=topics.REVIEWS_EVENTS,
        key=review_id.encode(),
        value=_json(event),
        headers=[*_HEADERS, (TRACEPARENT, child_of(traceparent).encode())],
    )
    return timeline, outbox


def _body(review: Sequenced, data: dict[str, Any]) -> dict[str, Any]:
    return {"review_id": str(review.id), **data}


def _json(value: Any) -> bytes:
    """JSON as `ReviewEventV1.model_dump(mode="json")` then `orjson.dumps` give it: times with `Z` for UTC, and
    whatever orjson cannot encode natively (a set, a Decimal) in pydantic's JSON form."""
    return orjson.dumps(value, default=to_jsonable_python, option=orjson.OPT_UTC_Z)


def trigger_ref(*, source: str, event_id: str, category: str, severity: str, scope: str) -> dict[str, Any]:
    """How review events name a trigger (its scope under the CloudEvents name, `subject`)."""
    return {"trigger": {"source": source, "id": event_id, "category": category, "severity": severity, "subject": scope}}


class StoredTrigger(Protocol):
    """How events name a stored trigger: a `DecidedTriggerRow`, or a `WaitingTrigger` the correlation flow read."""

    @property
    def source(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def subject(self) -> str: ...


def stored_trigger_ref(row: StoredTrigger) -> dict[str, Any]:
    return trigger_ref(
        source=row.source, event_id=row.event_id, category=row.category, severity=row.severity, scope=row.subject
    )


def review_summary(review: Mapping[str, Any]) -> dict[str, Any]:
    """What `review.opened` says of the review, from its column values."""
    due_at = review["due_at"]
    return {
        "title": review["title"],
        "category": review["category"],
        "severity": review["severity"],
        "state": review["state"],
        "owner": review["owner"],
        "correlation_key": review["correlation_key"],
        "due_at": due_at.isoformat() if due_at else None,
    }
