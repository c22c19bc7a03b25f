"""Dashboard read API: reviews list (filters, cursor pagination), detail and timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from services.core.auth import ReviewsRead
from services.core.http import ProblemError, decode_cursor, encode_cursor
from services.core.runtime import Runtime
from services.strategy_engine.lifecycle import ReviewState
from services.strategy_engine.persistence import ReviewRow, ReviewTriggerRow, TimelineRow


class ReviewOut(BaseModel):
    id: uuid.UUID
    title: str
    category: str
    severity: str
    state: str
    owner: str | None
    correlation_key: str
    opened_at: datetime
    due_at: datetime | None


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None


class TriggerRefOut(BaseModel):
    source: str
    id: str
    category: str
    severity: str
    subject: str
    occurred_at: datetime


class ReviewDetailOut(ReviewOut):
    triggers: list[TriggerRefOut]


class TimelineEntryOut(BaseModel):
    id: uuid.UUID
    sequence: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/reviews", tags=["reviews"])

    @router.get("", response_model=ReviewPage)
    async def list_reviews(
        _auth: ReviewsRead,
        state: ReviewState | None = None,
        category: str | None = None,
        severity: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ReviewPage:
        """Newest first. Pass `next_cursor` back as `cursor` for the next page; null means the end."""
        query = select(ReviewRow)
        for column, value in (
            (ReviewRow.state, state),
            (ReviewRow.category, category),
            (ReviewRow.severity, severity),
            (ReviewRow.owner, owner),
        ):
            if value is not None:
                query = query.where(column == value)
        if cursor:
            opened_at, last_id = decode_cursor(cursor, parse_id=uuid.UUID)
            query = query.where(
                or_(ReviewRow.opened_at < opened_at, and_(ReviewRow.opened_at == opened_at, ReviewRow.id < last_id))
            )
        query = query.order_by(ReviewRow.opened_at.desc(), ReviewRow.id.desc()).limit(limit + 1)
        async with runtime.uow.begin() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return ReviewPage(
            items=[ReviewOut.model_validate(row, from_attributes=True) for row in rows],
            next_cursor=encode_cursor(rows[-1].opened_at, rows[-1].id) if more else None,
        )

    @router.get("/{review_id}", response_model=ReviewDetailOut)
    async def get_review(review_id: uuid.UUID, _auth: ReviewsRead) -> ReviewDetailOut:
        async with runtime.uow.begin() as session:
            review = await _review(session, review_id)
            links = (
                await session.scalars(
                    select(ReviewTriggerRow)
                    .where(ReviewTriggerRow.review_id == review_id)
                    .order_by(ReviewTriggerRow.id)
                )
            ).all()
        base = ReviewOut.model_validate(review, from_attributes=True)
        triggers = [
            TriggerRefOut(
                source=link.source,
                id=link.event_id,
                category=link.category,
                severity=link.severity,
                subject=link.subject,
                occurred_at=link.occurred_at,
            )
            for link in links
        ]
        return ReviewDetailOut(**base.model_dump(), triggers=triggers)

    @router.get("/{review_id}/timeline", response_model=list[TimelineEntryOut])
    async def get_timeline(review_id: uuid.UUID, _auth: ReviewsRead) -> list[TimelineEntryOut]:
        async with runtime.uow.begin() as session:
            await _review(session, review_id)
            rows = (
                await session.scalars(
                    select(TimelineRow).where(TimelineRow.review_id == review_id).order_by(TimelineRow.sequence)
                )
            ).all()
        return [TimelineEntryOut.model_validate(row, from_attributes=True) for row in rows]

    return router


async def _review(session: Any, review_id: uuid.UUID) -> ReviewRow:
    review: ReviewRow | None = await session.get(ReviewRow, review_id)
    if review is None:
        raise ProblemError(404, "Not Found", f"no review {review_id}")
    return review
