"""Review domain events v1 on `reviews.events` (engine → notifier), keyed by review id."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class ReviewEventType(StrEnum):
    OPENED = "review.opened"
    UPDATED = "review.updated"
    TRIGGER_ATTACHED = "review.trigger_attached"
    TRANSITIONED = "review.transitioned"
    ASSESSMENT_RECORDED = "review.assessment_recorded"
    APPROVAL_RECORDED = "review.approval_recorded"
    DOCUMENT_PUBLISHED = "review.document_published"
    OVERDUE = "review.overdue"
    ESCALATED = "review.escalated"
    REMINDER = "review.reminder"
    CLOSED = "review.closed"
    ACKNOWLEDGEMENT_DUE = "document.acknowledgement_due"
    DOCUMENT_ACKNOWLEDGED = "document.acknowledged"


class ReviewEventV1(BaseModel):
    """`id` is unique per event and becomes the outgoing `webhook-id`; `sequence` orders one review's events.

    `category`, `severity` and `scope` describe the review (not the event) so subscribers can filter on them.
    `restricted` (added in v1, default false) marks a need-to-know review: the notifier sends its events to a
    subscription not cleared for restricted data with ids and type only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID
    type: ReviewEventType
    review_id: UUID
    sequence: int
    occurred_at: datetime
    data: dict[str, Any]
    category: str | None = None
    severity: str | None = None
    scope: str | None = None
    restricted: bool = False
