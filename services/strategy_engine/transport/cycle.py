"""Commands on a review: owner, guarded transitions, assessments, approvals, merge (scope reviews:write). A
review the caller is not cleared for (need-to-know) is 404 here exactly as a missing one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.contracts.reviews import ReviewEventType
from services.core.auth import ReviewsWrite
from services.core.http import Patch, PositiveInt32
from services.core.runtime import Runtime
from services.strategy_engine.assessments import AssessmentIn, Verdict, missing
from services.strategy_engine.errors import GuardRefused
from services.strategy_engine.flows import cycle
from services.strategy_engine.flows.events import lock_review, record_event, require_visible
from services.strategy_engine.lifecycle import Refusal, ReviewState
from services.strategy_engine.policies import PolicySet
from services.strategy_engine.transport.dashboard import ReviewOut, review_out

Actor = Annotated[str, Field(min_length=1, max_length=200)]


class ReviewPatch(Patch):
    nullable = frozenset({"owner", "actor"})  # a null owner unassigns the review

    owner: Actor | None = None
    title: Annotated[str, Field(min_length=1, max_length=600)] | None = None
    actor: Actor | None = None


class TransitionIn(BaseModel):
    to: ReviewState
    actor: Actor | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


class AssessmentPost(AssessmentIn):
    actor: Actor | None = None


class AssessmentRecordedOut(BaseModel):
    version: int
    complete: bool
    missing: list[str]
    risk_score: int | None


class ApprovalIn(BaseModel):
    version: PositiveInt32
    approver: Actor
    verdict: Verdict
    comment: Annotated[str, Field(max_length=2000)] | None = None


class ApprovalOut(BaseModel):
    decision: str


class MergeIn(BaseModel):
    into: uuid.UUID
    actor: Actor | None = None


def build_router(runtime: Runtime, policies: PolicySet) -> APIRouter:
    router = APIRouter(prefix="/v1/reviews/{review_id}", tags=["reviews"])

    @router.patch("", response_model=ReviewOut)
    async def update_review(review_id: uuid.UUID, body: ReviewPatch, caller: ReviewsWrite) -> ReviewOut:
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            review = await lock_review(session, review_id)
            changes = body.model_dump(exclude_unset=True, exclude={"actor"})
            for name, value in changes.items():
                setattr(review, name, value)
            if changes:
                record_event(session, review, ReviewEventType.UPDATED, now, {"actor": body.actor, "changed": changes})
            return review_out(review, now)

    @router.post("/transitions", response_model=ReviewOut)
    async def transition(review_id: uuid.UUID, body: TransitionIn, caller: ReviewsWrite) -> ReviewOut:
        """Guarded: a refused transition is 409 problem+json whose `guard` names the failed guard."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            result = await cycle.transition(
                session,
                review_id=review_id,
                target=body.to,
                actor=body.actor,
                reason=body.reason,
                policies=policies,
                now=now,
            )
            if isinstance(result, Refusal):
                raise GuardRefused(result.guard, result.detail)
            return review_out(result, now)

    @router.post("/assessments", status_code=201, response_model=AssessmentRecordedOut)
    async def record_assessment(
        review_id: uuid.UUID, body: AssessmentPost, caller: ReviewsWrite
    ) -> AssessmentRecordedOut:
        """Each post is a new version; approvals of earlier versions stop counting."""
        assessment = AssessmentIn.model_validate(body.model_dump(exclude={"actor"}))
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            row = await cycle.record_assessment(
                session, review_id=review_id, body=assessment, actor=body.actor, now=datetime.now(UTC)
            )
        return AssessmentRecordedOut(
            version=row.version, complete=row.complete, missing=missing(assessment), risk_score=row.risk_score
        )

    @router.post("/approvals", status_code=201, response_model=ApprovalOut)
    async def record_approval(review_id: uuid.UUID, body: ApprovalIn, caller: ReviewsWrite) -> ApprovalOut:
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            outcome = await cycle.record_approval(
                session,
                review_id=review_id,
                version=body.version,
                approver=body.approver,
                verdict=body.verdict,
                comment=body.comment,
                now=datetime.now(UTC),
            )
        return ApprovalOut(decision=outcome)

    @router.post("/merge", response_model=ReviewOut)
    async def merge(review_id: uuid.UUID, body: MergeIn, caller: ReviewsWrite) -> ReviewOut:
        """Merge this review into `into`: this one ends as `merged`, its triggers move over."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            for either in (review_id, body.into):
                await require_visible(session, either, caller.grants)
            target = await cycle.merge(
                session, source_id=review_id, into_id=body.into, actor=body.actor, now=now, policies=policies
            )
            return review_out(target, now)

    return router
