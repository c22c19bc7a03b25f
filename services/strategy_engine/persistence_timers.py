"""The timer loop's queries: what is due or waiting to be armed, claimed so that several engine replicas never
take the same row (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite serialises writers anyway). Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.core.db import is_postgres, table_of
from services.strategy_engine.documents import Status
from services.strategy_engine.persistence import (
    AcknowledgementRow,
    DocumentRow,
    DocumentVersionRow,
    ReviewRow,
    TimerRow,
)
from services.strategy_engine.persistence_bulk import insert_all, update_by_id


def _claim(session: AsyncSession, query: Any, *, of: Any = None) -> Any:
    """Skip rows another engine is working on right now (Postgres); never waits for a lock."""
    return query.with_for_update(skip_locked=True, of=of) if is_postgres(session) else query


async def unarmed_reviews(session: AsyncSession, *, limit: int) -> list[ReviewRow]:
    """Reviews whose current phase has no timers planned yet (a new review, or one that entered a phase)."""
    query = select(ReviewRow).where(ReviewRow.timers_armed.is_(False)).order_by(ReviewRow.phase_entered_at)
    return list((await session.scalars(_claim(session, query.limit(limit)))).all())


async def cancel_phase_timers(session: AsyncSession, review_ids: Collection[uuid.UUID]) -> None:
    """Drop the reviews' unsent phase timers (those of acknowledgements stay), in one statement."""
    if review_ids:
        await session.execute(
            delete(TimerRow).where(
                TimerRow.review_id.in_(sorted(review_ids)),
                TimerRow.acknowledgement_id.is_(None),
                TimerRow.fired_at.is_(None),
            )
        )


async def mark_armed(session: AsyncSession, reviews: Sequence[uuid.UUID], acknowledgements: Sequence[int]) -> None:
    """Record that these reviews' and acknowledgements' timers are planned: one statement per table on
    PostgreSQL, whatever their number. Rows already loaded in the session keep their old `timers_armed`, so
    the caller ends its transaction without reading it (the timer loop arms in a transaction of its own)."""
    await update_by_id(session, table_of(ReviewRow), {"id": list(reviews), "timers_armed": [True] * len(reviews)})
    armed = [True] * len(acknowledgements)
    await update_by_id(session, table_of(AcknowledgementRow), {"id": list(acknowledgements), "timers_armed": armed})


async def add_timers(session: AsyncSession, timers: Sequence[dict[str, Any]]) -> None:
    """New timers (column values), in one statement on PostgreSQL."""
    await insert_all(session, table_of(TimerRow), timers)


PUBLISHED = Status.PUBLISHED.value


async def unarmed_acknowledgements(
    session: AsyncSession, *, limit: int
) -> list[tuple[AcknowledgementRow, DocumentVersionRow, ReviewRow]]:
    """Pending acknowledgements whose reminders are not planned yet, with their version and review (only the
    acknowledgement is claimed)."""
    query = (
        select(AcknowledgementRow, DocumentVersionRow, ReviewRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .join(ReviewRow, ReviewRow.id == DocumentVersionRow.review_id)
        .where(
            AcknowledgementRow.timers_armed.is_(False),
            AcknowledgementRow.unanswered(),
            DocumentVersionRow.status == PUBLISHED,
        )
        .order_by(AcknowledgementRow.id)
        .limit(limit)
    )
    rows = await session.execute(_claim(session, query, of=AcknowledgementRow))
    return [(ack, version, review) for ack, version, review in rows.all()]


async def due_timers(session: AsyncSession, now: datetime, *, limit: int) -> list[TimerRow]:
    """Unsent timers due at `now`, claimed, soonest first."""
    query = (
        select(TimerRow)
        .where(TimerRow.fired_at.is_(None), TimerRow.fire_at <= now)
        .order_by(TimerRow.fire_at, TimerRow.id)
        .limit(limit)
    )
    return list((await session.scalars(_claim(session, query))).all())


async def claim_reviews(session: AsyncSession, review_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, ReviewRow]:
    """Those of the reviews nobody else holds, locked (a review someone is changing waits for the next tick)."""
    if not review_ids:
        return {}
    query = select(ReviewRow).where(ReviewRow.id.in_(sorted(review_ids))).order_by(ReviewRow.id)
    return {row.id: row for row in (await session.scalars(_claim(session, query))).all()}


async def acknowledgement_subjects(
    session: AsyncSession, ack_ids: Collection[int]
) -> dict[int, tuple[AcknowledgementRow, DocumentVersionRow, DocumentRow]]:
    """Acknowledgements with their version and document, by acknowledgement id."""
    if not ack_ids:
        return {}
    query = (
        select(AcknowledgementRow, DocumentVersionRow, DocumentRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .join(DocumentRow, DocumentRow.id == DocumentVersionRow.document_id)
        .where(AcknowledgementRow.id.in_(sorted(ack_ids)))
    )
    return {ack.id: (ack, version, document) for ack, version, document in (await session.execute(query)).all()}


async def past_deadline(
    session: AsyncSession,
    now: datetime,
    *,
    deadline: InstrumentedAttribute[datetime | None],
    marker: InstrumentedAttribute[str | None],
    terminal: Collection[str],
    limit: int,
) -> list[ReviewRow]:
    """Open reviews past `deadline` whose `marker` (the phase an alarm last fired for) is not their phase, claimed."""
    fired: ColumnElement[bool] = or_(marker.is_(None), marker != ReviewRow.state)
    query = (
        select(ReviewRow)
        .where(deadline <= now, ReviewRow.state.not_in(sorted(terminal)), fired)
        .order_by(deadline)
        .limit(limit)
    )
    return list((await session.scalars(_claim(session, query))).all())


async def due_acknowledgements(session: AsyncSession, now: datetime, *, limit: int) -> list[AcknowledgementRow]:
    """Acknowledgements of a published (current) version past their due date, unanswered (see
    `AcknowledgementRow.unanswered`) and not yet told so, claimed."""
    query = (
        select(AcknowledgementRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(
            AcknowledgementRow.due_at <= now,
            AcknowledgementRow.unanswered(),
            AcknowledgementRow.reminded_at.is_(None),
            DocumentVersionRow.status == PUBLISHED,  # a superseded version is no longer asked for
        )
        .order_by(AcknowledgementRow.due_at)
        .limit(limit)
    )
    return list((await session.scalars(_claim(session, query, of=AcknowledgementRow))).all())
