"""`GET /v1/me/pending`: the signed-in caller's own work (reviews they own, verdicts and acknowledgements that
wait on them), need-to-know filtered as every other read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.core.auth import ReviewsRead
from services.core.identity.model import normal_email
from services.core.runtime import Runtime
from services.strategy_engine import persistence
from services.strategy_engine.assessments import AssessmentIn, names_approver
from services.strategy_engine.documents import Status
from services.strategy_engine.lifecycle import TERMINAL, ReviewState, is_overdue
from services.strategy_engine.persistence import AcknowledgementRow, DocumentRow, DocumentVersionRow, ReviewRow


class PendingReviewOut(BaseModel):
    id: uuid.UUID
    title: str
    state: str
    severity: str
    category: str
    due_at: datetime | None = Field(description="when the current phase is due")
    overdue: bool


class PendingApprovalOut(PendingReviewOut):
    version: int = Field(description="the assessment version awaiting the caller's verdict")


class PendingAcknowledgementOut(BaseModel):
    document_id: uuid.UUID
    kind: str
    org_unit: str | None
    title: str
    version: int
    review_id: uuid.UUID
    review_title: str
    published_at: datetime | None
    required: bool
    due_at: datetime = Field(description="when the caller's acknowledgement is due")
    overdue: bool
    exception_requested: bool = Field(
        description="the caller asked to be excused from this version; it stays here until they acknowledge it"
    )


class PendingTotals(BaseModel):
    """How many items each list has in all (a list shows at most `limit` of them)."""

    reviews_owned: int
    approvals_waiting: int
    documents_to_acknowledge: int


class PendingOut(BaseModel):
    reviews_owned: list[PendingReviewOut]
    approvals_waiting: list[PendingApprovalOut]
    documents_to_acknowledge: list[PendingAcknowledgementOut]
    overdue: int = Field(
        description="how many of the items of the three lists (all of them, not only those shown) are overdue"
    )
    totals: PendingTotals


def _review(row: ReviewRow, now: datetime) -> PendingReviewOut:
    return PendingReviewOut(
        id=row.id,
        title=row.title,
        state=row.state,
        severity=row.severity,
        category=row.category,
        due_at=row.due_at,
        overdue=is_overdue(ReviewState(row.state), row.due_at, now),
    )


def _acknowledgement(
    ack: AcknowledgementRow, version: DocumentVersionRow, document: DocumentRow, review: ReviewRow, now: datetime
) -> PendingAcknowledgementOut:
    return PendingAcknowledgementOut(
        document_id=document.id,
        kind=document.kind,
        org_unit=document.org_unit or None,
        title=document.title,
        version=version.version,
        review_id=review.id,
        review_title=review.title,
        published_at=version.published_at,
        required=ack.required,
        due_at=ack.due_at,
        overdue=ack.due_at < now,
        exception_requested=ack.decision == "exception_requested",
    )


def _nothing() -> PendingOut:
    return PendingOut(
        reviews_owned=[],
        approvals_waiting=[],
        documents_to_acknowledge=[],
        overdue=0,
        totals=PendingTotals(reviews_owned=0, approvals_waiting=0, documents_to_acknowledge=0),
    )


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reviews"])

    @router.get("/me/pending", response_model=PendingOut)
    async def pending(caller: ReviewsRead, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> PendingOut:
        """What waits on the caller, soonest due first: open reviews they own; reviews in approval whose current
        assessment names them as an approver and has no verdict of theirs yet; published (current) document
        versions they have neither acknowledged nor declined (one they asked an exception for stays, marked so).
        Each list shows at most `limit` items; `totals` and `overdue`
        count all of them. Reviews the caller is not cleared for (need-to-know) are left out, with their
        documents. A service account (no person) has nothing pending."""
        if caller.email is None:
            return _nothing()
        email, now = normal_email(caller.email), datetime.now(UTC)
        async with runtime.uow.begin() as session:
            owned, owned_total, owned_late = await persistence.reviews_owned(
                session,
                email=email,
                terminal=[s.value for s in TERMINAL],
                grants=caller.grants,
                now=now,
                limit=limit,
            )
            candidates = await persistence.awaiting_verdict(
                session, email=email, state=ReviewState.APPROVAL.value, grants=caller.grants
            )
            acks, acks_total, acks_late = await persistence.unacknowledged(
                session, recipient=email, status=Status.PUBLISHED.value, grants=caller.grants, now=now, limit=limit
            )
        waiting = [
            PendingApprovalOut(**_review(review, now).model_dump(), version=assessment.version)
            for review, assessment in candidates
            if names_approver(AssessmentIn.model_validate(assessment.body), email)
        ]
        return PendingOut(
            reviews_owned=[_review(row, now) for row in owned],
            approvals_waiting=waiting[:limit],
            documents_to_acknowledge=[_acknowledgement(*row, now) for row in acks],
            overdue=owned_late + sum(item.overdue for item in waiting) + acks_late,
            totals=PendingTotals(
                reviews_owned=owned_total, approvals_waiting=len(waiting), documents_to_acknowledge=acks_total
            ),
        )

    return router
