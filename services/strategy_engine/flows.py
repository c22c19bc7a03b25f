"""Engine use cases: a batch of `TriggerAccepted` → reviews opened or attached, events via the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.kafka import Message
from services.core.observability import REVIEWS, get_logger
from services.core.outbox import outbox_values
from services.strategy_engine import persistence
from services.strategy_engine.lifecycle import INITIAL
from services.strategy_engine.persistence import EngineOutboxRow, ReviewRow, ReviewTriggerRow, TimelineRow
from services.strategy_engine.policies import TRIAGE_DUE, correlation_key

log = get_logger(__name__)


async def handle_accepted_batch(session: AsyncSession, batch: Sequence[Message], *, now: datetime) -> int:
    """Correlate each new trigger into an open review (opening one if none); returns triggers linked."""
    triggers = [trigger for trigger in map(_parse, batch) if trigger is not None]
    already = await persistence.linked_triggers(session, [(t.source, t.id) for t in triggers])
    reviews: dict[str, ReviewRow | None] = {}
    linked = 0
    for trigger in triggers:
        if (trigger.source, trigger.id) in already:
            continue
        already.add((trigger.source, trigger.id))
        key = correlation_key(trigger)
        if key not in reviews:
            reviews[key] = await persistence.open_review(session, key)
        review = reviews[key]
        if review is None:
            review = reviews[key] = _open(session, trigger, key, now)
            record_event(session, review, ReviewEventType.OPENED, now, _review_data(review, trigger))
        else:
            record_event(session, review, ReviewEventType.TRIGGER_ATTACHED, now, _trigger_data(trigger))
        session.add(_link(review, trigger, now))
        linked += 1
    return linked


def _parse(message: Message) -> TriggerAcceptedV1 | None:
    try:
        return TriggerAcceptedV1.model_validate_json(message.value or b"")
    except ValidationError as exc:
        # Only ingest writes this topic; a bad record is a bug to see, not a reason to stop the engine.
        log.error(
            "unreadable TriggerAccepted skipped", partition=message.partition, offset=message.offset, error=str(exc)
        )
        return None


def _open(session: AsyncSession, trigger: TriggerAcceptedV1, key: str, now: datetime) -> ReviewRow:
    review = ReviewRow(
        id=uuid.uuid4(),
        correlation_key=key,
        open_key=key,
        title=_title(trigger),
        category=trigger.category.value,
        severity=trigger.severity.value,
        scope=trigger.subject,
        state=INITIAL.value,
        owner=None,
        opened_at=now,
        due_at=now + TRIAGE_DUE,
        event_sequence=0,
    )
    session.add(review)
    return review


def _link(review: ReviewRow, trigger: TriggerAcceptedV1, now: datetime) -> ReviewTriggerRow:
    return ReviewTriggerRow(
        review_id=review.id,
        source=trigger.source,
        event_id=trigger.id,
        category=trigger.category.value,
        severity=trigger.severity.value,
        subject=trigger.subject,
        occurred_at=trigger.occurred_at,
        linked_at=now,
        data=trigger.data,
    )


def record_event(
    session: AsyncSession, review: ReviewRow, type_: ReviewEventType, now: datetime, data: dict[str, Any]
) -> ReviewEventV1:
    """Append to the review's timeline and to the outbox, in the caller's transaction."""
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
    )
    session.add(
        TimelineRow(
            id=event.id,
            review_id=review.id,
            sequence=event.sequence,
            type=type_.value,
            occurred_at=now,
            data=event.data,
        )
    )
    session.add(
        EngineOutboxRow(
            **outbox_values(
                topic=topics.REVIEWS_EVENTS,
                key=str(review.id).encode(),
                value=orjson.dumps(event.model_dump(mode="json")),
                headers=[("content-type", b"application/json"), ("smits-schema", b"ReviewEvent.v1")],
            )
        )
    )
    REVIEWS.labels(type_.value).inc()
    return event


def _title(trigger: TriggerAcceptedV1) -> str:
    label = trigger.data.get("title") or trigger.data.get("regulation_id") or trigger.subject
    return f"{trigger.category.value.replace('_', ' ')}: {label}"[:600]


def _trigger_data(trigger: TriggerAcceptedV1) -> dict[str, Any]:
    return {
        "trigger": {
            "source": trigger.source,
            "id": trigger.id,
            "category": trigger.category.value,
            "severity": trigger.severity.value,
            "subject": trigger.subject,
        },
    }


def _review_data(review: ReviewRow, trigger: TriggerAcceptedV1) -> dict[str, Any]:
    return {
        "title": review.title,
        "category": review.category,
        "severity": review.severity,
        "state": review.state,
        "correlation_key": review.correlation_key,
        "due_at": review.due_at.isoformat() if review.due_at else None,
        **_trigger_data(trigger),
    }
