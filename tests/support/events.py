"""Review events produced straight to `reviews.events`, to drive the notifier without the engine."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from services.contracts import topics
from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.settings import Settings
from tests.support.kafka import Raw, produce_raw


def review_event(
    review_id: uuid.UUID,
    sequence: int,
    *,
    type_: ReviewEventType = ReviewEventType.OPENED,
    category: str = "regulation_update",
    severity: str = "high",
    scope: str = "bu-1",
) -> ReviewEventV1:
    data: dict[str, Any] = {"review_id": str(review_id), "title": f"review {review_id.hex[:6]} #{sequence}"}
    return ReviewEventV1(
        id=uuid.uuid4(),
        type=type_,
        review_id=review_id,
        sequence=sequence,
        occurred_at=datetime.now(UTC),
        data=data,
        category=category,
        severity=severity,
        scope=scope,
    )


async def publish(settings: Settings, events: Sequence[ReviewEventV1]) -> None:
    await produce_raw(
        settings,
        topics.REVIEWS_EVENTS,
        [Raw(orjson.dumps(e.model_dump(mode="json")), key=str(e.review_id).encode()) for e in events],
    )


def tuned(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with some values changed (validated again)."""
    return Settings(**{**settings.model_dump(), **changes})


def accepted(
    category: str,
    event_id: str,
    *,
    at: datetime,
    subject: str = "bu-1",
    severity: str = "high",
    **data: Any,
) -> dict[str, Any]:
    """A `TriggerAccepted` v1 document, as ingest would hand it to the engine."""
    return {
        "kind": "TriggerAccepted",
        "version": 1,
        "source": "/tests",
        "id": event_id,
        "type": f"smits.trigger.{category}.v1",
        "category": category,
        "severity": severity,
        "subject": subject,
        "occurred_at": at.isoformat(),
        "received_at": at.isoformat(),
        "data": data,
    }


async def feed_engine(settings: Settings, documents: Sequence[dict[str, Any]]) -> None:
    await produce_raw(
        settings,
        topics.TRIGGERS_ACCEPTED,
        [Raw(orjson.dumps(doc), key=doc["subject"].encode()) for doc in documents],
    )


DORA = {
    "regulation_id": "DORA",
    "title": "DORA",
    "jurisdiction": "EU",
    "issuing_body": "ESAs",
    "change_type": "amendment",
    "effective_date": "2027-01-17",
}
"""The `data` of a regulation update that the bundled policy correlates on `regulation_id`."""
