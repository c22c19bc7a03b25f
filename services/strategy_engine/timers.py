"""SLA timers as data: a claimer loop over `due_at` columns, safe with several engine replicas.

Each tick claims due rows with `FOR UPDATE SKIP LOCKED` (Postgres), marks them fired and records the event
in the same transaction, so a timer fires exactly once however many engines run. Clock injected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType
from services.core.db import UnitOfWork, is_postgres
from services.core.observability import get_logger
from services.core.outbox import OutboxRelay
from services.strategy_engine.flows.events import lock_review, record_event
from services.strategy_engine.lifecycle import TERMINAL
from services.strategy_engine.persistence import AcknowledgementRow, DocumentRow, DocumentVersionRow, ReviewRow

log = get_logger(__name__)
Clock = Callable[[], datetime]
BATCH = 100
_TERMINAL = [state.value for state in TERMINAL]


class TimerLoop:
    def __init__(self, *, uow: UnitOfWork, relay: OutboxRelay, interval_s: float, clock: Clock | None = None) -> None:
        self._uow = uow
        self._relay = relay
        self._interval_s = interval_s
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("timer loop started", interval_s=self._interval_s)
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("timer tick failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
        log.info("timer loop stopped")

    async def tick(self) -> int:
        """Fire everything due now; returns how many events were recorded."""
        now = self._clock()
        async with self._uow.begin() as session:
            fired = await _overdue(session, now) + await _escalations(session, now) + await _reminders(session, now)
            if fired:
                self._relay.wake_after_commit(session)
        return fired


def _claim(session: AsyncSession, query: Any) -> Any:
    """Skip rows another engine is firing right now (Postgres); SQLite serialises writers anyway."""
    return query.with_for_update(skip_locked=True) if is_postgres(session) else query


async def _overdue(session: AsyncSession, now: datetime) -> int:
    return await _phase_alarm(session, now, ReviewRow.due_at, "overdue_phase", ReviewEventType.OVERDUE)


async def _escalations(session: AsyncSession, now: datetime) -> int:
    return await _phase_alarm(session, now, ReviewRow.escalate_at, "escalated_phase", ReviewEventType.ESCALATED)


async def _phase_alarm(session: AsyncSession, now: datetime, deadline: Any, fired: str, type_: ReviewEventType) -> int:
    """Fire `type_` once per phase for open reviews past `deadline`; the `fired` column remembers the
    phase it fired for, so a new phase re-arms the alarm."""
    marker = getattr(ReviewRow, fired)
    query = _claim(
        session,
        select(ReviewRow)
        .where(deadline <= now, ReviewRow.state.not_in(_TERMINAL), or_(marker.is_(None), marker != ReviewRow.state))
        .order_by(deadline)
        .limit(BATCH),
    )
    reviews = list((await session.scalars(query)).all())
    for review in reviews:
        setattr(review, fired, review.state)
        due_at = review.due_at.isoformat() if review.due_at else None
        record_event(session, review, type_, now, {"phase": review.state, "due_at": due_at, "owner": review.owner})
    return len(reviews)


async def _reminders(session: AsyncSession, now: datetime) -> int:
    query = _claim(
        session,
        select(AcknowledgementRow)
        .where(
            AcknowledgementRow.due_at <= now,
            AcknowledgementRow.acknowledged_at.is_(None),
            AcknowledgementRow.reminded_at.is_(None),
        )
        .order_by(AcknowledgementRow.due_at)
        .limit(BATCH),
    )
    acks = list((await session.scalars(query)).all())
    for ack in acks:
        ack.reminded_at = now
        version = await session.get(DocumentVersionRow, ack.version_id)
        assert version is not None
        document = await session.get(DocumentRow, version.document_id)
        assert document is not None
        review = await lock_review(session, version.review_id)
        record_event(
            session,
            review,
            ReviewEventType.ACKNOWLEDGEMENT_DUE,
            now,
            {
                "document_id": str(document.id),
                "kind": document.kind,
                "version": version.version,
                "recipient": ack.recipient,
                "due_at": ack.due_at.isoformat(),
            },
        )
    return len(acks)
