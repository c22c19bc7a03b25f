"""Ingest tables (prefix `ingest_`) and the bulk statements the batch flow needs. Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    and_,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.bounds import fit_columns
from services.core.db import Base, UTCDateTime, get_row, insert_ignore, table_of
from services.core.outbox import OutboxMixin

_ID = BigInteger().with_variant(Integer(), "sqlite")


class AcceptedTriggerRow(Base):
    __tablename__ = "ingest_triggers"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_ingest_triggers_category_received", "category", "received_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)


class RejectionRow(Base):
    """A dead-lettered record; unique per Kafka position so a replayed batch does not dead-letter twice."""

    __tablename__ = "ingest_rejections"
    __table_args__ = (UniqueConstraint("kafka_topic", "kafka_partition", "kafka_offset"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kafka_topic: Mapped[str] = mapped_column(String(300))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(500))
    event_id: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(String(2000))
    field: Mapped[str | None] = mapped_column(String(300))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class DuplicateRow(Base):
    """A repeat of an accepted (source, id) seen at another Kafka position."""

    __tablename__ = "ingest_duplicates"
    __table_args__ = (UniqueConstraint("kafka_topic", "kafka_partition", "kafka_offset"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(500))
    kafka_topic: Mapped[str] = mapped_column(String(300))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IngestOutboxRow(OutboxMixin, Base):
    __tablename__ = "ingest_outbox"


async def insert_triggers(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert, skipping (source, event_id) already stored; returns the keys that were new."""
    if not rows:
        return set()
    table = table_of(AcceptedTriggerRow)
    statement = insert_ignore(session, table, ["source", "event_id"]).returning(table.c.source, table.c.event_id)
    result = await session.execute(statement, list(rows))
    return {(source, event_id) for source, event_id in result.all()}


async def insert_rejections(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[int, int]]:
    """Insert rejections not seen before; returns the (partition, offset) of the new ones.

    Their texts come from outside (reasons quote the input), so each is bounded to its column here."""
    if not rows:
        return set()
    table = table_of(RejectionRow)
    statement = insert_ignore(
        session,
        table,
        ["kafka_topic", "kafka_partition", "kafka_offset"],
    ).returning(table.c.kafka_partition, table.c.kafka_offset)
    result = await session.execute(statement, [fit_columns(table, row) for row in rows])
    return {(partition, offset) for partition, offset in result.all()}


async def insert_duplicates(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        table = table_of(DuplicateRow)
        statement = insert_ignore(session, table, ["kafka_topic", "kafka_partition", "kafka_offset"])
        await session.execute(statement, [fit_columns(table, row) for row in rows])


async def find_trigger(
    session: AsyncSession, source: str, event_id: str, *, hidden: Collection[str] = ()
) -> AcceptedTriggerRow | None:
    """The accepted trigger, unless its category is one of the `hidden` (need-to-know) ones."""
    row: AcceptedTriggerRow | None = await session.scalar(
        select(AcceptedTriggerRow).where(
            AcceptedTriggerRow.source == source,
            AcceptedTriggerRow.event_id == event_id,
            AcceptedTriggerRow.category.not_in(sorted(hidden)),
        )
    )
    return row


async def count_duplicates(session: AsyncSession, source: str, event_id: str) -> int:
    query = select(func.count()).where(DuplicateRow.source == source, DuplicateRow.event_id == event_id)
    return int(await session.scalar(query) or 0)


async def latest_rejection(session: AsyncSession, source: str, event_id: str) -> RejectionRow | None:
    row: RejectionRow | None = await session.scalar(
        select(RejectionRow)
        .where(RejectionRow.source == source, RejectionRow.event_id == event_id)
        .order_by(RejectionRow.id.desc())
        .limit(1)
    )
    return row


Listed = AcceptedTriggerRow | RejectionRow | DuplicateRow
_BY_STATUS: dict[str, type[AcceptedTriggerRow] | type[RejectionRow] | type[DuplicateRow]] = {
    "accepted": AcceptedTriggerRow,
    "rejected": RejectionRow,
    "duplicate": DuplicateRow,
}


async def list_by_status(
    session: AsyncSession,
    *,
    status: str,
    category: str | None,
    source: str | None,
    since: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
    hidden: Collection[str] = (),
) -> list[Listed]:
    """Newest first by (received_at, id); `before` is the keyset cursor of the previous page. Triggers of the
    `hidden` categories (need-to-know) are left out, and so are the duplicates of such triggers."""
    model: Any = _BY_STATUS[status]
    query = select(model)
    if hidden and model is AcceptedTriggerRow:
        query = query.where(AcceptedTriggerRow.category.not_in(sorted(hidden)))
    elif hidden and model is DuplicateRow:
        of_hidden = exists().where(
            AcceptedTriggerRow.source == DuplicateRow.source,
            AcceptedTriggerRow.event_id == DuplicateRow.event_id,
            AcceptedTriggerRow.category.in_(sorted(hidden)),
        )
        query = query.where(~of_hidden)
    if category is not None:
        if model is not AcceptedTriggerRow:
            return []  # only accepted triggers have a validated category
        query = query.where(AcceptedTriggerRow.category == category)
    if source is not None:
        query = query.where(model.source == source)
    if since is not None:
        query = query.where(model.received_at >= since)
    if before is not None:
        at, row_id = before
        query = query.where(or_(model.received_at < at, and_(model.received_at == at, model.id < row_id)))
    query = query.order_by(model.received_at.desc(), model.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def dead_letters(
    session: AsyncSession,
    *,
    reason: str | None,
    since: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[RejectionRow]:
    """Dead-lettered records (each rejection has one), newest first by (received_at, id); `before` is the
    keyset cursor of the previous page."""
    query = select(RejectionRow)
    if reason is not None:
        query = query.where(RejectionRow.reason == reason)
    if since is not None:
        query = query.where(RejectionRow.received_at >= since)
    if before is not None:
        at, row_id = before
        query = query.where(
            or_(RejectionRow.received_at < at, and_(RejectionRow.received_at == at, RejectionRow.id < row_id))
        )
    query = query.order_by(RejectionRow.received_at.desc(), RejectionRow.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def dead_letter(session: AsyncSession, dead_letter_id: int) -> RejectionRow:
    """The rejection whose dead letter is `dead_letter_id`; `NotFound` if there is none."""
    return await get_row(session, RejectionRow, dead_letter_id, what="dead letter")
