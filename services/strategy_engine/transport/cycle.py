"""Commands on a review: owner, guarded transitions, assessments, approvals, merge (scope reviews:write), each
by the caller (see `rights.py` for who may do which). A review the caller is not cleared for (need-to-know) is
404 here exactly as a missing one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from services.core.auth import ReviewsWrite
from services.core.http import ActorField, Patch, PositiveInt32, request_id
from services.core.identity import audit
from services.core.runtime import Runtime
from services.strategy_engine.assessments import AssessmentIn, Verdict, missing
from services.strategy_engine.errors import GuardRefused
from services.strategy_engine.flows import cycle
from services.strategy_engine.flows.events import require_visible
from services.strategy_engine.lifecycle import Refusal, ReviewState
from services.strategy_engine.policies import PolicySet
from services.strategy_engine.transport.dashboard import ReviewOut, review_out


class ReviewPatch(Patch):
    nullable = frozenset({"owner", "actor"})  # a null owner unassigns the review

    owner: Annotated[str, Field(min_length=1, max_length=320, description="a person's e-mail")] | None = None
    title: Annotated[str, Field(min_length=1, max_length=600)] | None = None
    actor: ActorField = Field(default=None, exclude=True)


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: ReviewState
    reason: Annotated[str, Field(max_length=1000)] | None = None
    actor: ActorField = Field(default=None, exclude=True)


class AssessmentPost(AssessmentIn):
    actor: ActorField = Field(default=None, exclude=True)


class AssessmentRecordedOut(BaseModel):
    version: int
    complete: bool
    missing: list[str]
    risk_score: int | None


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: PositiveInt32
    verdict: Verdict
    comment: Annotated[str, Field(max_length=2000)] | None = None
    approver: ActorField = Field(default=None, exclude=True)


class ApprovalOut(BaseModel):
    decision: str


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: uuid.UUID
    actor: ActorField = Field(default=None, exclude=True)


def build_router(runtime: Runtime, policies: PolicySet) -> APIRouter:
    """Every command acts as the caller (never a name in the body) and appends an audit record with it."""
    router = APIRouter(prefix="/v1/reviews/{review_id}", tags=["reviews"])

    @router.patch("", response_model=ReviewOut)
    async def update_review(
        request: Request, review_id: uuid.UUID, body: ReviewPatch, caller: ReviewsWrite
    ) -> ReviewOut:
        """The review's owner or a strategy manager; `owner` names an active person by e-mail (null unassigns)."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            review, before = await cycle.update_review(
                session, review_id=review_id, changes=body.model_dump(exclude_unset=True), caller=caller, now=now
            )
            after = {name: getattr(review, name) for name in before}
            await audit.record_by(
                session,
                caller,
                action="review.update",
                target=f"review:{review_id}",
                now=now,
                request_id=request_id(request),
                before=before,
                after=after,
                detail={"changed": ",".join(sorted(before)), **after},
            )
            return review_out(review, now)

    @router.post("/transitions", response_model=ReviewOut)
    async def transition(request: Request, review_id: uuid.UUID, body: TransitionIn, caller: ReviewsWrite) -> ReviewOut:
        """The review's owner or a strategy manager. Guarded: a refused transition is 409 problem+json whose
        `guard` names the failed guard."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            result = await cycle.transition(
                session,
                review_id=review_id,
                target=body.to,
                caller=caller,
                reason=body.reason,
                policies=policies,
                now=now,
            )
            if isinstance(result, Refusal):
                raise GuardRefused(result.guard, result.detail)
            await audit.record_by(
                session,
                caller,
                action="review.transition",
                target=f"review:{review_id}",
                now=now,
                request_id=request_id(request),
                after={"state": result.state},
                detail={"to": result.state, "reason": body.reason},
            )
            return review_out(result, now)

    @router.post("/assessments", status_code=201, response_model=AssessmentRecordedOut)
    async def record_assessment(
        request: Request, review_id: uuid.UUID, body: AssessmentPost, caller: ReviewsWrite
    ) -> AssessmentRecordedOut:
        """A strategy manager, the owner, or a contributor of the review's org unit. Each post is a new
        version; approvals of earlier versions stop counting. Approvers are named by e-mail."""
        now = datetime.now(UTC)
        assessment = AssessmentIn.model_validate(body.model_dump())
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            row = await cycle.record_assessment(session, review_id=review_id, body=assessment, caller=caller, now=now)
            await audit.record_by(
                session,
                caller,
                action="assessment.record",
                target=f"review:{review_id}",
                now=now,
                request_id=request_id(request),
                after=row.body,
                detail={"version": row.version, "complete": row.complete},
            )
        return AssessmentRecordedOut(
            version=row.version, complete=row.complete, missing=missing(assessment), risk_score=row.risk_score
        )

    @router.post("/approvals", status_code=201, response_model=ApprovalOut)
    async def record_approval(
        request: Request, review_id: uuid.UUID, body: ApprovalIn, caller: ReviewsWrite
    ) -> ApprovalOut:
        """The caller's verdict: they must hold the approver role and be named on the version (else 403)."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            outcome = await cycle.record_approval(
                session,
                review_id=review_id,
                version=body.version,
                caller=caller,
                verdict=body.verdict,
                comment=body.comment,
                now=now,
            )
            await audit.record_by(
                session,
                caller,
                action="approval.record",
                target=f"review:{review_id}",
                now=now,
                request_id=request_id(request),
                detail={"version": body.version, "verdict": body.verdict.value, "decision": outcome},
            )
        return ApprovalOut(decision=outcome)

    @router.post("/merge", response_model=ReviewOut)
    async def merge(request: Request, review_id: uuid.UUID, body: MergeIn, caller: ReviewsWrite) -> ReviewOut:
        """Merge this review into `into` (the caller steers both): this one ends as `merged`, its triggers
        move over."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            for either in (review_id, body.into):
                await require_visible(session, either, caller.grants)
            target = await cycle.merge(
                session, source_id=review_id, into_id=body.into, caller=caller, now=now, policies=policies
            )
            await audit.record_by(
                session,
                caller,
                action="review.merge",
                target=f"review:{review_id}",
                now=now,
                request_id=request_id(request),
                detail={"into": str(body.into)},
            )
            return review_out(target, now)

    return router
