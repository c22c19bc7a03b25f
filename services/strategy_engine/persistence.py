"""Engine tables (prefix `engine_`). Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.db import Base, UTCDateTime, new_id
from services.core.outbox import OutboxMixin

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ReviewRow(Base):
    """A strategy review cycle. `open_key` equals `correlation_key` while open and is NULL after, so the
    unique constraint on it allows one open review per key even with several engine replicas."""

    __tablename__ = "engine_reviews"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    correlation_key: Mapped[str] = mapped_column(String(600), index=True)
    open_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    title: Mapped[str] = mapped_column(String(600))
    category: Mapped[str] = mapped_column(String(50), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str | None] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(20), index=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    event_sequence: Mapped[int] = mapped_column(Integer, default=0)


class ReviewTriggerRow(Base):
    """Links a trigger to its review; unique per trigger, which makes replays no-ops."""

    __tablename__ = "engine_review_triggers"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(500))
    category: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TimelineRow(Base):
    """Append-only history of a review: every domain event it emitted, in sequence."""

    __tablename__ = "engine_timeline"
    __table_args__ = (UniqueConstraint("review_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EngineOutboxRow(OutboxMixin, Base):
    __tablename__ = "engine_outbox"


async def linked_triggers(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    sources = {source for source, _ in keys}
    ids = {event_id for _, event_id in keys}
    rows = await session.execute(
        select(ReviewTriggerRow.source, ReviewTriggerRow.event_id).where(
            ReviewTriggerRow.source.in_(sources), ReviewTriggerRow.event_id.in_(ids)
        )
    )
    return {(source, event_id) for source, event_id in rows.all()} & set(keys)


async def open_review(session: AsyncSession, key: str) -> ReviewRow | None:
    row: ReviewRow | None = await session.scalar(select(ReviewRow).where(ReviewRow.open_key == key))
    return row


async def count_reviews(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ReviewRow)) or 0)
