"""Dashboard reads: reviews (filters, cursor pagination), detail, timeline and KPIs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.core.auth import ReviewsRead
from services.core.http import Instant, ProblemError, decode_cursor, encode_cursor
from services.core.runtime import Runtime
from services.strategy_engine import board, kpis, persistence
from services.strategy_engine.board import MAX_QUERY_TEXT, PageEnd, ReviewSort
from services.strategy_engine.errors import Invalid
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


SEARCH_HELP = (
    f"free text (at most {MAX_QUERY_TEXT} characters), case-insensitive, in the title and the data of the review's "
    "triggers (as JSON text)"
)


def _page_end(sort: ReviewSort, cursor: str) -> PageEnd:
    """Where the page a cursor came from ended; newest-first cursors keep the format they always had."""
    if sort is ReviewSort.NEWEST:
        return PageEnd(*decode_cursor(cursor, parse_id=uuid.UUID))
    try:
        return board.decode(sort, cursor)
    except ValueError as exc:
        raise ProblemError(400, "Bad Request", f"cursor is not one this API returned ({exc})", field="cursor") from exc


def _cursor(sort: ReviewSort, position: PageEnd) -> str:
    if sort is ReviewSort.NEWEST:
        assert isinstance(position.key, datetime)
        return encode_cursor(position.key, position.id)
    return board.encode(sort, position)


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reviews"])

    @router.get("/reviews", response_model=ReviewPage)
    async def list_reviews(
        caller: ReviewsRead,
        state: ReviewState | None = None,
        category: str | None = None,
        severity: str | None = None,
        owner: str | None = None,
        org_unit: Annotated[str | None, Query(description="the review's org unit (its scope), exactly")] = None,
        overdue: bool | None = None,
        opened_from: Annotated[Instant | None, Query(description="opened at or after")] = None,
        opened_to: Annotated[Instant | None, Query(description="opened before")] = None,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT, description=SEARCH_HELP)] = None,
        sort: ReviewSort = ReviewSort.NEWEST,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ReviewPage:
        """Newest first unless `sort` says otherwise (`-` for descending; reviews without a due date come last
        either way, severities by rank, titles ignoring case; ties by id). Pass `next_cursor` back as `cursor`,
        with the same `sort` and filters, for the next page; null means the end. Reviews the caller is not cleared
        for (need-to-know) are not listed."""
        if opened_from is not None and opened_to is not None and opened_from > opened_to:
            raise Invalid("opened_from is after opened_to", field="opened_to")
        now = datetime.now(UTC)
        filters = {"state": state, "category": category, "severity": severity, "owner": owner, "scope": org_unit}
        async with runtime.uow.begin() as session:
            rows = await persistence.list_reviews(
                session,
                filters=filters,
                overdue=overdue,
                terminal={s.value for s in TERMINAL},
                opened=(opened_from, opened_to),
                text=(q or "").strip() or None,
                sort=sort,
                after=_page_end(sort, cursor) if cursor else None,
                limit=limit + 1,
                now=now,
                grants=caller.grants,
            )
        page, next_cursor = rows[:limit], None
        if len(rows) > limit:
            last, key = page[-1]
            next_cursor = _cursor(sort, PageEnd(key, last.id))
        return ReviewPage(items=[review_out(row, now) for row, _ in page], next_cursor=next_cursor)

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
    async def get_kpis(caller: ReviewsRead) -> dict[str, Any]:
        """Lead times in seconds (averages), overdue counts, current-copy coverage, rework and volumes: aggregates
        only (restricted reviews count in them, but no title, id or subject of any review appears). `trend`:
        triggers accepted and reviews opened per ISO week (Monday 00:00 UTC), the last 12, oldest first.
        `by_category` and `by_org_unit` (the review's scope): open reviews and how many are overdue per group,
        largest first (at most 100 groups), counting only the reviews the caller may see (need-to-know)."""
        async with runtime.uow.begin() as session:
            return await kpis.compute(session, datetime.now(UTC), grants=caller.grants)

    return router
