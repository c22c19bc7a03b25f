"""Dashboard reads: reviews (filters, cursor pagination), detail, timeline and KPIs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.core.auth import ReviewsRead
from services.core.http import decode_cursor, encode_cursor
from services.core.runtime import Runtime
from services.strategy_engine import kpis, persistence
from services.strategy_engine.flows.cycle import facts, latest_assessment
from services.strategy_engine.flows.events import require_visible
from services.strategy_engine.lifecycle import TERMINAL, ReviewState, is_overdue, next_steps
from services.strategy_engine.persistence import DecidedTriggerRow, ReviewRow


class ReviewOut(BaseModel):
    id: uuid.UUID
    title: str
    category: str
    severity: str
    scope: str | None
    state: str
    owner: str | None
    policy_id: str
    correlation_key: str
    opened_at: datetime
    phase_entered_at: datetime
    due_at: datetime | None
    overdue: bool
    merged_into: uuid.UUID | None
    closed_at: datetime | None


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None


class DecisionOut(BaseModel):
    source: str
    id: str
    category: str
    severity: str
    subject: str
    occurred_at: datetime
    policy_id: str
    correlation_key: str
    outcome: str
    reason: str
    review_id: uuid.UUID | None
    decided_at: datetime


class AssessmentOut(BaseModel):
    version: int
    complete: bool
    risk_score: int | None
    created_at: datetime
    created_by: str | None
    body: dict[str, Any]


class DocumentVersionOut(BaseModel):
    document_id: uuid.UUID
    kind: str
    org_unit: str | None
    version: int
    status: str
    published_at: datetime | None


class TransitionOut(BaseModel):
    """A transition the review's current state has, and whether its guards let it through now."""

    to: ReviewState
    allowed: bool
    guard: str | None = Field(description="the guard that refuses it now (null: allowed)")
    blocked_by: str | None = Field(description="that guard's refusal, in words (null: allowed)")


class ReviewDetailOut(ReviewOut):
    triggers: list[DecisionOut]
    assessment: AssessmentOut | None
    decision: str
    documents: list[DocumentVersionOut]
    transitions: list[TransitionOut] = Field(
        description="every transition from the current state, checked against the review as it is now; the "
        "caller's right to steer the review is not part of it, and cancelling always names its reason guard "
        "(a reason is given with the request)"
    )


class TimelineEntryOut(BaseModel):
    id: uuid.UUID
    sequence: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


def review_out(row: ReviewRow, now: datetime) -> ReviewOut:
    return ReviewOut(
        id=row.id,
        title=row.title,
        category=row.category,
        severity=row.severity,
        scope=row.scope,
        state=row.state,
        owner=row.owner,
        policy_id=row.policy_id,
        correlation_key=row.correlation_key,
        opened_at=row.opened_at,
        phase_entered_at=row.phase_entered_at,
        due_at=row.due_at,
        overdue=is_overdue(ReviewState(row.state), row.due_at, now),
        merged_into=row.merged_into,
        closed_at=row.closed_at,
    )


def decision_out(row: DecidedTriggerRow) -> DecisionOut:
    return DecisionOut(
        source=row.source,
        id=row.event_id,
        category=row.category,
        severity=row.severity,
        subject=row.subject,
        occurred_at=row.occurred_at,
        policy_id=row.policy_id,
        correlation_key=row.correlation_key,
        outcome=row.outcome,
        reason=row.reason,
        review_id=row.review_id,
        decided_at=row.decided_at,
    )


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reviews"])

    @router.get("/reviews", response_model=ReviewPage)
    async def list_reviews(
        caller: ReviewsRead,
        state: ReviewState | None = None,
        category: str | None = None,
        severity: str | None = None,
        owner: str | None = None,
        overdue: bool | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ReviewPage:
        """Newest first. Pass `next_cursor` back as `cursor` for the next page; null means the end. Reviews the
        caller is not cleared for (need-to-know) are not listed."""
        now = datetime.now(UTC)
        before = decode_cursor(cursor, parse_id=uuid.UUID) if cursor else None
        filters = {"state": state, "category": category, "severity": severity, "owner": owner}
        terminal = {s.value for s in TERMINAL}
        async with runtime.uow.begin() as session:
            rows = await persistence.list_reviews(
                session,
                filters=filters,
                overdue=overdue,
                terminal=terminal,
                before=before,
                limit=limit + 1,
                now=now,
                grants=caller.grants,
            )
        page = rows[:limit]
        return ReviewPage(
            items=[review_out(row, now) for row in page],
            next_cursor=encode_cursor(page[-1].opened_at, page[-1].id) if len(rows) > limit else None,
        )

    @router.get("/reviews/{review_id}", response_model=ReviewDetailOut)
    async def get_review(review_id: uuid.UUID, caller: ReviewsRead) -> ReviewDetailOut:
        async with runtime.uow.begin() as session:
            review = await require_visible(session, review_id, caller.grants)
            triggers = await persistence.review_triggers(session, review_id)
            current = await latest_assessment(session, review_id)
            snapshot = await facts(session, review)
            versions = await persistence.review_documents(session, review_id)
        return ReviewDetailOut(
            **review_out(review, datetime.now(UTC)).model_dump(),
            triggers=[decision_out(row) for row in triggers],
            assessment=AssessmentOut.model_validate(current, from_attributes=True) if current else None,
            decision=snapshot.decision,
            documents=[
                DocumentVersionOut(
                    document_id=d.id,
                    kind=d.kind,
                    org_unit=d.org_unit or None,
                    version=v.version,
                    status=v.status,
                    published_at=v.published_at,
                )
                for v, d in versions
            ],
            transitions=[
                TransitionOut(
                    to=target,
                    allowed=refusal is None,
                    guard=refusal.guard if refusal else None,
                    blocked_by=refusal.detail if refusal else None,
                )
                for target, refusal in next_steps(ReviewState(review.state), snapshot)
            ],
        )

    @router.get("/reviews/{review_id}/timeline", response_model=list[TimelineEntryOut])
    async def get_timeline(review_id: uuid.UUID, caller: ReviewsRead) -> list[TimelineEntryOut]:
        """Append-only: every event the review emitted, in order."""
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            rows = await persistence.timeline(session, review_id)
        return [TimelineEntryOut.model_validate(row, from_attributes=True) for row in rows]

    @router.get("/kpis")
    async def get_kpis(_auth: ReviewsRead) -> dict[str, Any]:
        """Lead times in seconds (averages), overdue counts, current-copy coverage, rework and volumes: aggregates
        only (restricted reviews count in them, but no title, id or subject of any review appears)."""
        async with runtime.uow.begin() as session:
            return await kpis.compute(session, datetime.now(UTC))

    return router
