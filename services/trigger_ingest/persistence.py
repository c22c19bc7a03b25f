"""Ingest tables (prefix `ingest_`) and the bulk statements the batch flow needs. Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
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
from services.core.db import Base, UTCDateTime, get_row, insert_ignore, is_postgres, table_of
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


@dataclass(kw_only=True, frozen=True, slots=True)
class NewTrigger:
    """A trigger row to insert; `data_json` is `data` as JSON (PostgreSQL stores those bytes as they are)."""

    source: str
    event_id: str
    type: str
    category: str
    severity: str
    subject: str
    occurred_at: datetime
    data: dict[str, Any]
    data_json: bytes
    kafka_partition: int
    kafka_offset: int


# PostgreSQL: one statement per table and batch, its text fixed (arrays through `unnest`), so it is prepared
# once per connection; SQLite: SQLAlchemy's bulk insert.
_INSERT_TRIGGERS = """
INSERT INTO ingest_triggers (source, event_id, type, category, severity, subject, occurred_at, received_at, data,
                             kafka_partition, kafka_offset)
SELECT u.source, u.event_id, u.type, u.category, u.severity, u.subject, u.occurred_at, $8, u.data::json,
       u.kafka_partition, u.kafka_offset
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $9::text[],
            $10::int[], $11::bigint[])
     AS u(source, event_id, type, category, severity, subject, occurred_at, data, kafka_partition, kafka_offset)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING source, event_id
"""
_INSERT_REJECTIONS = """
INSERT INTO ingest_rejections (kafka_topic, kafka_partition, kafka_offset, source, event_id, reason, message, field,
                               key, received_at)
SELECT u.kafka_topic, u.kafka_partition, u.kafka_offset, u.source, u.event_id, u.reason, u.message, u.field, u.key,
       u.received_at
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bytea[], $10::timestamptz[])
     AS u(kafka_topic, kafka_partition, kafka_offset, source, event_id, reason, message, field, key, received_at)
ON CONFLICT (kafka_topic, kafka_partition, kafka_offset) DO NOTHING
RETURNING kafka_partition, kafka_offset
"""
_INSERT_DUPLICATES = """
INSERT INTO ingest_duplicates (source, event_id, kafka_topic, kafka_partition, kafka_offset, received_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::timestamptz[])
ON CONFLICT (kafka_topic, kafka_partition, kafka_offset) DO NOTHING
"""
_REJECTION_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "source",
    "event_id",
    "reason",
    "message",
    "field",
    "key",
    "received_at",
)
_DUPLICATE_COLUMNS = ("source", "event_id", "kafka_topic", "kafka_partition", "kafka_offset", "received_at")


async def insert_triggers(
    session: AsyncSession, rows: Sequence[NewTrigger], *, received_at: datetime
) -> set[tuple[str, str]]:
    """Insert, skipping (source, event_id) already stored; returns the keys that were new."""
    if not rows:
        return set()
    if is_postgres(session):
        columns = (
            [row.source for row in rows],
            [row.event_id for row in rows],
            [row.type for row in rows],
            [row.category for row in rows],
            [row.severity for row in rows],
            [row.subject for row in rows],
            [row.occurred_at for row in rows],
            received_at,
            [row.data_json.decode() for row in rows],
            [row.kafka_partition for row in rows],
            [row.kafka_offset for row in rows],
        )
        found: Sequence[Any] = (await (await session.connection()).exec_driver_sql(_INSERT_TRIGGERS, columns)).all()
    else:
        table = table_of(AcceptedTriggerRow)
        statement = insert_ignore(session, table, ["source", "event_id"]).returning(table.c.source, table.c.event_id)
        values = [{**_without_json(row), "received_at": received_at} for row in rows]
        found = (await session.execute(statement, values)).all()
    return {(source, event_id) for source, event_id in found}


def _without_json(row: NewTrigger) -> dict[str, Any]:
    values = asdict(row)
    del values["data_json"]
    return values


async def insert_rejections(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[int, int]]:
    """Insert rejections not seen before; returns the (partition, offset) of the new ones.

    Their texts come from outside (reasons quote the input), so each is bounded to its column here."""
    if not rows:
        return set()
    table = table_of(RejectionRow)
    fitted = [fit_columns(table, row) for row in rows]
    if is_postgres(session):
        columns = tuple([row[name] for row in fitted] for name in _REJECTION_COLUMNS)
        found: Sequence[Any] = (await (await session.connection()).exec_driver_sql(_INSERT_REJECTIONS, columns)).all()
    else:
        statement = insert_ignore(
            session,
            table,
            ["kafka_topic", "kafka_partition", "kafka_offset"],
        ).returning(table.c.kafka_partition, table.c.kafka_offset)
        found = (await session.execute(statement, fitted)).all()
    return {(partition, offset) for partition, offset in found}


async def insert_duplicates(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    table = table_of(DuplicateRow)
    fitted = [fit_columns(table, row) for row in rows]
    if is_postgres(session):
        columns = tuple([row[name] for row in fitted] for name in _DUPLICATE_COLUMNS)
        await (await session.connection()).exec_driver_sql(_INSERT_DUPLICATES, columns)
    else:
        statement = insert_ignore(session, table, ["kafka_topic", "kafka_partition", "kafka_offset"])
        await session.execute(statement, fitted)


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
