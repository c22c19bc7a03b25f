"""Output documents: kinds, version statuses and their order, distribution lists (pure)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Kind(StrEnum):
    STRATEGY_ASSESSMENT_REPORT = "strategy_assessment_report"
    STRATEGY_PLAN = "strategy_plan"
    TACTICAL_PLAN = "tactical_plan"
    OPERATIONAL_PLAN = "operational_plan"
    STRATEGY_REVIEW = "strategy_review"
    MISSION_AND_VISION = "mission_and_vision"


class Status(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    SUPERSEDED = "superseded"


NEXT: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.IN_REVIEW}),
    Status.IN_REVIEW: frozenset({Status.APPROVED, Status.DRAFT}),
    Status.APPROVED: frozenset({Status.PUBLISHED}),
    Status.PUBLISHED: frozenset(),  # only publishing a later version supersedes it: no rollback
    Status.SUPERSEDED: frozenset(),
}
PER_ORG_UNIT = frozenset({Kind.TACTICAL_PLAN, Kind.OPERATIONAL_PLAN})


def may_move(current: Status, target: Status) -> bool:
    return target in NEXT[current]


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    org_unit: Annotated[str, Field(max_length=200)] | None = None
    required: bool = True


class AckState(StrEnum):
    """Where one recipient of a published version stands in its acknowledgement campaign."""

    ACKNOWLEDGED = "acknowledged"
    PENDING = "pending"
    OVERDUE = "overdue"


def ack_state(*, acknowledged_at: datetime | None, due_at: datetime, now: datetime) -> AckState:
    """Acknowledged (whenever, even late), else overdue once the due date has passed, else pending."""
    if acknowledged_at is not None:
        return AckState.ACKNOWLEDGED
    return AckState.OVERDUE if due_at < now else AckState.PENDING
