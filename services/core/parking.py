"""Outbox records Kafka refuses for good, moved aside so they never block the records behind them.

A record is parked only for an error that retrying cannot cure (too large, invalid, not encodable); anything
else (broker down, timeouts, leadership changes) is retried in place, so per-key order holds for the rest.
Operators list, retry (back into its outbox under its original id, so in outbox order) or drop parked
records with `smits outbox parked|retry|drop`; while any is parked `/readyz` answers 503 naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import errors as kafka_errors
from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, column, delete, func, insert, select, table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.bounds import ERROR_MAX_CHARS, describe
from services.core.db import Base, UTCDateTime, table_of

_PERMANENT_KAFKA = (
    kafka_errors.MessageSizeTooLargeError,  # over max_request_size (client) or max.message.bytes (broker)
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,  # what the broker answers for an invalid record
    kafka_errors.UnsupportedForMessageFormatError,
    # aiokafka reports codes it does not know, notably INVALID_RECORD (87, e.g. a key-less record on a
    # compacted topic), as a bare UnknownError; the Java producer also fails a record on it, without retry.
    kafka_errors.UnknownError,
)


class ParkedOutboxRow(Base):
    """A copy of the outbox row (`outbox` table, its `outbox_id`) and why Kafka refused it."""

    __tablename__ = "core_outbox_parked"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    outbox: Mapped[str] = mapped_column(String(100))
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    error: Mapped[str] = mapped_column(String(ERROR_MAX_CHARS))
    parked_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(kw_only=True, frozen=True, slots=True)
class Parked:
    """What operators and `/readyz` see of a parked record."""

    id: int
    outbox: str
    outbox_id: int
    topic: str
    size: int
    error: str
    parked_at: datetime


def is_permanent(exc: BaseException) -> bool:
    """True when publishing this record again cannot succeed (so it must be moved aside)."""
    return isinstance(exc, (*_PERMANENT_KAFKA, UnicodeError, TypeError))


async def park(session: AsyncSession, outbox: str, refused: Sequence[tuple[Any, BaseException]]) -> None:
    """Copy refused outbox rows (with their errors) into the parked table; the caller deletes them."""
    now = datetime.now(UTC)
    values = [
        {
            "outbox": outbox,
            "outbox_id": row.id,
            "topic": row.topic,
            "key": row.key,
            "value": row.value,
            "headers": row.headers,
            "created_at": row.created_at,
            "error": describe(exc),
            "parked_at": now,
        }
        for row, exc in refused
    ]
    await session.execute(insert(table_of(ParkedOutboxRow)), values)


async def count_parked(session: AsyncSession, outboxes: Sequence[str] | None = None) -> dict[str, int]:
    """Parked records per outbox table (only `outboxes` when given)."""
    query = select(ParkedOutboxRow.outbox, func.count()).group_by(ParkedOutboxRow.outbox)
    if outboxes is not None:
        query = query.where(ParkedOutboxRow.outbox.in_(list(outboxes)))
    return {name: int(count) for name, count in (await session.execute(query)).all()}


async def list_parked(
    session: AsyncSession, *, outboxes: Sequence[str] | None = None, limit: int = 100
) -> list[Parked]:
    query = select(
        ParkedOutboxRow.id,
        ParkedOutboxRow.outbox,
        ParkedOutboxRow.outbox_id,
        ParkedOutboxRow.topic,
        func.length(ParkedOutboxRow.value).label("size"),
        ParkedOutboxRow.error,
        ParkedOutboxRow.parked_at,
    ).order_by(ParkedOutboxRow.id)
    if outboxes is not None:
        query = query.where(ParkedOutboxRow.outbox.in_(list(outboxes)))
    rows = (await session.execute(query.limit(limit))).all()
    return [Parked(**row._asdict()) for row in rows]


async def retry(session: AsyncSession, parked_id: int) -> Parked | None:
    """Put a parked record back into its outbox under its original id (its place in outbox order); None if
    there is no such parked record. Should that id be taken again (SQLite may reuse ids), it goes last."""
    row = await session.get(ParkedOutboxRow, parked_id, with_for_update=True)
    if row is None:
        return None
    outbox = _outbox_table(row.outbox)
    taken = await session.scalar(select(outbox.c.id).where(outbox.c.id == row.outbox_id))
    values: dict[str, Any] = {
        "topic": row.topic,
        "key": row.key,
        "value": row.value,
        "headers": row.headers,
        "created_at": row.created_at,
    }
    if taken is None:
        values["id"] = row.outbox_id
    await session.execute(insert(outbox).values(**values))
    return await _remove(session, row)


async def drop(session: AsyncSession, parked_id: int) -> Parked | None:
    """Delete a parked record for good; None if there is no such parked record."""
    row = await session.get(ParkedOutboxRow, parked_id, with_for_update=True)
    return None if row is None else await _remove(session, row)


async def _remove(session: AsyncSession, row: ParkedOutboxRow) -> Parked:
    summary = Parked(
        id=row.id,
        outbox=row.outbox,
        outbox_id=row.outbox_id,
        topic=row.topic,
        size=len(row.value),
        error=row.error,
        parked_at=row.parked_at,
    )
    await session.execute(delete(ParkedOutboxRow).where(ParkedOutboxRow.id == row.id))
    return summary


def _outbox_table(name: str) -> Any:
    """The outbox's columns (`OutboxMixin`) without importing the service that owns the table."""
    if not name.endswith("_outbox") or not name.replace("_", "").isalnum():
        raise ValueError(f"{name!r} is not an outbox table")
    return table(
        name,
        column("id", BigInteger()),
        column("topic", String()),
        column("key", LargeBinary()),
        column("value", LargeBinary()),
        column("headers", Text()),
        column("created_at", UTCDateTime()),
    )
