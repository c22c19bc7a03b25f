"""The review cycle: guarded transitions, assessments and approvals, merging reviews."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType
from services.core.identity import store
from services.core.identity.model import Caller
from services.strategy_engine import rights
from services.strategy_engine.assessments import AssessmentIn, Verdict, asked, decision, missing, next_in_sequence
from services.strategy_engine.errors import GuardRefused, Invalid
from services.strategy_engine.flows.access import require_edit, require_steer
from services.strategy_engine.flows.events import lock_review, record_event, stored_trigger_ref
from services.strategy_engine.lifecycle import TERMINAL, ApprovalDecision, Refusal, ReviewFacts, ReviewState, check
from services.strategy_engine.persistence import (
    ApprovalRow,
    AssessmentRow,
    DecidedTriggerRow,
    DocumentVersionRow,
    ReviewRow,
    TransitionRow,
    clearance_of,
)
from services.strategy_engine.policies import PolicySet


async def latest_assessment(session: AsyncSession, review_id: uuid.UUID) -> AssessmentRow | None:
    row: AssessmentRow | None = await session.scalar(
        select(AssessmentRow)
        .where(AssessmentRow.review_id == review_id)
        .order_by(AssessmentRow.version.desc())
        .limit(1)
    )
    return row


async def _verdicts(session: AsyncSession, assessment_id: uuid.UUID) -> list[tuple[str, Verdict]]:
    rows = await session.scalars(
        select(ApprovalRow).where(ApprovalRow.assessment_id == assessment_id).order_by(ApprovalRow.id)
    )
    return [(row.approver, Verdict(row.verdict)) for row in rows.all()]


async def _approvers(session: AsyncSession, review_id: uuid.UUID) -> list[str]:
    """Whose verdict on the current assessment version is awaited now (`assessments.asked`): in sequence, the
    next in line; in a quorum, each named approver who has given none."""
    current = await latest_assessment(session, review_id)
    if current is None:
        return []
    return asked(AssessmentIn.model_validate(current.body).approvers, await _verdicts(session, current.id))


async def facts(session: AsyncSession, review: ReviewRow, *, reason: str | None = None) -> ReviewFacts:
    """The snapshot the lifecycle guards read, from the current assessment version and documents."""
    published = int(
        await session.scalar(
            select(func.count()).where(
                DocumentVersionRow.review_id == review.id, DocumentVersionRow.published_at >= review.phase_entered_at
            )
        )
        or 0
    )
    current = await latest_assessment(session, review.id)
    if current is None:
        return ReviewFacts(owner=review.owner, documents_published_in_phase=published, reason=reason)
    body = AssessmentIn.model_validate(current.body)
    verdict, waiting = decision(body.approvers, await _verdicts(session, current.id))
    return ReviewFacts(
        owner=review.owner,
        assessment_complete=current.complete,
        assessment_missing=tuple(missing(body)),
        has_recommendation=body.recommendation is not None,
        approvals_complete=verdict is ApprovalDecision.APPROVED,
        approvals_missing=waiting or f"the decision is {verdict}",
        decision=verdict,
        documents_published_in_phase=published,
        reason=reason,
    )


async def transition(
    session: AsyncSession,
    *,
    review_id: uuid.UUID,
    target: ReviewState,
    caller: Caller,
    reason: str | None,
    policies: PolicySet,
    now: datetime,
) -> ReviewRow | Refusal:
    """Move the review to `target` if the caller may steer it and every guard lets it."""
    review = await lock_review(session, review_id)
    require_steer(caller, review)
    actor = caller.label
    current = ReviewState(review.state)
    refusal = check(current, target, await facts(session, review, reason=reason))
    if refusal is not None:
        return refusal
    enter(review, target, policies, now)
    session.add(
        TransitionRow(
            review_id=review.id, from_state=current.value, to_state=target.value, at=now, actor=actor, reason=reason
        )
    )
    data: dict[str, Any] = {
        "from": current.value,
        "to": target.value,
        "actor": actor,
        "reason": reason,
        "due_at": review.due_at.isoformat() if review.due_at else None,
    }
    if target is ReviewState.APPROVAL:  # who is asked for a verdict (the notifier tells them)
        data["approvers"] = await _approvers(session, review.id)
    record_event(session, review, ReviewEventType.TRANSITIONED, now, data)
    if target is ReviewState.CLOSED:
        record_event(session, review, ReviewEventType.CLOSED, now, {"actor": actor})
    return review


async def update_review(
    session: AsyncSession, *, review_id: uuid.UUID, changes: dict[str, Any], caller: Caller, now: datetime
) -> tuple[ReviewRow, dict[str, Any]]:
    """Change the review's `owner` (a person, by e-mail; None unassigns) or `title`; returns the review and
    the values it had before."""
    review = await lock_review(session, review_id)
    require_steer(caller, review)
    if changes.get("owner") is not None:
        owner = await store.principal_by_email(session, changes["owner"])
        if owner is None or owner.email is None or owner.disabled_at is not None:
            raise Invalid(
                f"the owner must be a person: no active person with e-mail {changes['owner']!r}", field="owner"
            )
        changes = {**changes, "owner": owner.email}
    before = {name: getattr(review, name) for name in changes}
    for name, value in changes.items():
        setattr(review, name, value)
    if changes:
        record_event(session, review, ReviewEventType.UPDATED, now, {"actor": caller.label, "changed": changes})
    return review, before


def enter(review: ReviewRow, target: ReviewState, policies: PolicySet, now: datetime) -> None:
    """Move to `target`: new phase clock and due date; a terminal state frees the correlation key."""
    review.state, review.phase_entered_at = target.value, now
    review.overdue_phase = review.escalated_phase = None
    review.timers_armed = False  # the timer loop cancels the old phase's unsent timers and plans the new ones
    due = None if target in TERMINAL else policies.get(review.policy_id).due_in(target)
    review.due_at = now + due if due else None
    review.escalate_at = review.due_at + timedelta(seconds=review.escalate_after_s) if review.due_at else None
    if target in TERMINAL:
        review.open_key, review.closed_at = None, now


async def record_assessment(
    session: AsyncSession, *, review_id: uuid.UUID, body: AssessmentIn, caller: Caller, now: datetime
) -> AssessmentRow:
    """A new version; approvals given to earlier versions no longer count. Approvers are named by e-mail."""
    review = await lock_review(session, review_id)
    await require_edit(session, caller, review)
    if ReviewState(review.state) in TERMINAL:
        raise GuardRefused("review_open", f"the review is {review.state}")
    if body.approvers is not None:
        named = rights.people(body.approvers.names, field="approvers.names")
        body = body.model_copy(update={"approvers": body.approvers.model_copy(update={"names": named})})
    previous = await latest_assessment(session, review.id)
    gaps = missing(body)
    row = AssessmentRow(
        id=uuid.uuid4(),
        review_id=review.id,
        version=(previous.version + 1) if previous else 1,
        body=body.model_dump(mode="json"),
        complete=not gaps,
        risk_score=body.risk.score if body.risk else None,
        created_at=now,
        created_by=caller.label,
    )
    session.add(row)
    record_event(
        session,
        review,
        ReviewEventType.ASSESSMENT_RECORDED,
        now,
        {
            "version": row.version,
            "complete": row.complete,
            "missing": gaps,
            "risk_score": row.risk_score,
            "supersedes_approvals": previous is not None,
            "actor": caller.label,
        },
    )
    return row


async def record_approval(
    session: AsyncSession,
    *,
    review_id: uuid.UUID,
    version: int,
    caller: Caller,
    verdict: Verdict,
    comment: str | None,
    now: datetime,
) -> ApprovalDecision:
    """Record the caller's verdict on the current assessment version, as an approver named on it; returns
    the resulting decision."""
    review = await lock_review(session, review_id)
    if ReviewState(review.state) is not ReviewState.APPROVAL:
        raise GuardRefused("in_approval", f"the review is in {review.state}")
    current = await latest_assessment(session, review.id)
    if current is None or current.version != version:
        latest = current.version if current else None
        raise GuardRefused("current_version", f"version {version} is not the current one ({latest})")
    body = AssessmentIn.model_validate(current.body)
    approver = rights.approver(caller, named=body.approvers.names if body.approvers else (), version=version)
    assert body.approvers is not None  # rights.approver refuses a version that names nobody
    given = await _verdicts(session, current.id)
    if any(name == approver for name, _ in given):
        raise GuardRefused("single_verdict", f"{approver!r} already gave a verdict")
    expected = next_in_sequence(body.approvers, [n for n, v in given if v is Verdict.APPROVE])
    if body.approvers.mode == "sequence" and verdict is Verdict.APPROVE and approver != expected:
        raise GuardRefused("approval_sequence", f"waiting for {expected!r}")
    session.add(
        ApprovalRow(assessment_id=current.id, approver=approver, verdict=verdict.value, comment=comment, at=now)
    )
    outcome, _ = decision(body.approvers, [*given, (approver, verdict)])
    data: dict[str, Any] = {"version": version, "approver": approver, "verdict": verdict.value, "decision": outcome}
    if body.approvers.mode == "sequence" and outcome is ApprovalDecision.PENDING:
        data["approvers"] = asked(body.approvers, [*given, (approver, verdict)])  # the next in line (the notifier)
    record_event(session, review, ReviewEventType.APPROVAL_RECORDED, now, data)
    return outcome


async def merge(
    session: AsyncSession,
    *,
    source_id: uuid.UUID,
    into_id: uuid.UUID,
    caller: Caller,
    now: datetime,
    policies: PolicySet,
) -> ReviewRow:
    """Close `source` as merged into `into`; its triggers are re-linked to `into`."""
    if source_id == into_id:
        raise GuardRefused("distinct_reviews", "a review cannot be merged into itself")
    first, second = sorted([source_id, into_id])  # lock in a fixed order: two opposite merges cannot deadlock
    locked = {first: await lock_review(session, first), second: await lock_review(session, second)}
    source, target = locked[source_id], locked[into_id]
    actor = caller.label
    for review in (source, target):
        require_steer(caller, review)
        if ReviewState(review.state) in TERMINAL:
            raise GuardRefused("review_open", f"review {review.id} is {review.state}")
    if (source.restricted, await clearance_of(session, source.id)) != (
        target.restricted,
        await clearance_of(session, target.id),
    ):  # merged triggers must not become visible to anyone their review hid them from
        raise GuardRefused("same_clearance", "both reviews must be restricted to the same grants, or neither")
    moved = list(
        (await session.scalars(select(DecidedTriggerRow).where(DecidedTriggerRow.review_id == source.id))).all()
    )
    await session.execute(
        update(DecidedTriggerRow).where(DecidedTriggerRow.review_id == source.id).values(review_id=target.id)
    )
    previous = source.state
    enter(source, ReviewState.MERGED, policies, now)
    source.merged_into = target.id
    target.first_trigger_at = min(target.first_trigger_at, source.first_trigger_at)
    target.last_trigger_at = max(target.last_trigger_at, source.last_trigger_at)
    session.add(
        TransitionRow(
            review_id=source.id,
            from_state=previous,
            to_state=ReviewState.MERGED.value,
            at=now,
            actor=actor,
            reason=f"merged into {target.id}",
        )
    )
    record_event(
        session,
        source,
        ReviewEventType.TRANSITIONED,
        now,
        {"from": previous, "to": ReviewState.MERGED.value, "actor": actor, "merged_into": str(target.id)},
    )
    for row in moved:
        record_event(
            session,
            target,
            ReviewEventType.TRIGGER_ATTACHED,
            now,
            {"merged_from": str(source.id), **stored_trigger_ref(row)},
        )
    return target
