"""Consumer positions stored with the effects of a batch, and parked partitions (core table).

Invariant: a row's `next_offset` is written in the same transaction as the effects of every record below
it, so it is never behind what the database holds; Kafka's committed offset may lag it (a crash between
the two commits) and then the stored position wins. A partition is *parked* while `parked_at` is set: its
consumer does not apply it, and `smits consumer resume` clears it (optionally marking the record at
`next_offset` to be skipped). Group and topic are the full Kafka names (with the topic prefix).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.bounds import ERROR_MAX_CHARS, error_text
from services.core.db import Base, UTCDateTime, insert_ignore, is_postgres, table_of


class ConsumerPositionRow(Base):
    __tablename__ = "core_consumer_positions"

    consumer_group: Mapped[str] = mapped_column(String(300), primary_key=True)
    topic: Mapped[str] = mapped_column(String(300), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(ERROR_MAX_CHARS))
    """Why the partition was parked; kept while a skip is pending (it is the dead letter's reason)."""
    skip_offset: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(kw_only=True, frozen=True, slots=True)
class Position:
    group: str
    topic: str
    partition: int
    next_offset: int
    parked_at: datetime | None = None
    error: str | None = None
    skip_offset: int | None = None

    @property
    def parked(self) -> bool:
        return self.parked_at is not None


def _position(row: Any) -> Position:
    return Position(
        group=row.consumer_group,
        topic=row.topic,
        partition=row.partition,
        next_offset=row.next_offset,
        parked_at=row.parked_at,
        error=row.error,
        skip_offset=row.skip_offset,
    )


def _key(group: str, topic: str) -> Any:
    return (ConsumerPositionRow.consumer_group == group) & (ConsumerPositionRow.topic == topic)


async def lock(
    session: AsyncSession, *, group: str, topic: str, partitions: Collection[int], now: datetime
) -> dict[int, Position]:
    """The stored positions of `partitions`, created at 0 when missing, locked until the transaction ends.

    Creating first means two consumers of the same partition (a zombie after a rebalance) queue on the
    row lock on Postgres instead of both reading "nothing stored" (SQLite serializes writers anyway)."""
    table = table_of(ConsumerPositionRow)
    fresh = [
        {"consumer_group": group, "topic": topic, "partition": p, "next_offset": 0, "updated_at": now}
        for p in sorted(partitions)
    ]
    await session.execute(insert_ignore(session, table, ["consumer_group", "topic", "partition"]), fresh)
    query = select(table).where(_key(group, topic), table.c.partition.in_(sorted(partitions)))
    if is_postgres(session):
        query = query.order_by(table.c.partition).with_for_update()
    return {row.partition: _position(row) for row in (await session.execute(query)).all()}


async def advance(session: AsyncSession, *, group: str, topic: str, moves: Sequence[Position], now: datetime) -> None:
    """Store new next offsets (and the pending skip, if any) of rows locked by `lock`."""
    if not moves:
        return
    table = table_of(ConsumerPositionRow)
    statement = (
        update(table)
        .where(_key(group, topic), table.c.partition == bindparam("p"))
        .values(next_offset=bindparam("n"), skip_offset=bindparam("s"), updated_at=now)
    )
    await session.execute(statement, [{"p": m.partition, "n": m.next_offset, "s": m.skip_offset} for m in moves])


async def park(
    session: AsyncSession, *, group: str, topic: str, partition: int, offset: int, error: str, now: datetime
) -> None:
    """Mark the partition parked at `offset` (its next offset: the records before it are applied)."""
    await lock(session, group=group, topic=topic, partitions=[partition], now=now)
    await session.execute(
        update(ConsumerPositionRow)
        .where(_key(group, topic), ConsumerPositionRow.partition == partition)
        .values(next_offset=offset, parked_at=now, error=error_text(error), skip_offset=None, updated_at=now)
    )


async def parked(session: AsyncSession, *, group: str | None = None, topic: str | None = None) -> list[Position]:
    """Parked partitions, of one consumer (group and topic) or of all."""
    query = select(ConsumerPositionRow).where(ConsumerPositionRow.parked_at.is_not(None))
    if group is not None and topic is not None:
        query = query.where(_key(group, topic))
    query = query.order_by(ConsumerPositionRow.consumer_group, ConsumerPositionRow.topic, ConsumerPositionRow.partition)
    return [_position(row) for row in (await session.scalars(query)).all()]


async def stored(session: AsyncSession, *, group: str, topic: str, partitions: Collection[int]) -> dict[int, Position]:
    """Positions of `partitions` without locking (for seeking on assignment)."""
    query = select(ConsumerPositionRow).where(_key(group, topic), ConsumerPositionRow.partition.in_(list(partitions)))
    return {row.partition: _position(row) for row in (await session.scalars(query)).all()}


async def resume(
    session: AsyncSession, *, group: str, topic: str, partition: int, skip: bool, now: datetime
) -> Position | None:
    """Un-park a partition; with `skip` the record at its next offset is handed to the skip hook instead of
    the flow. None when that partition is not parked."""
    row = await session.scalar(
        select(ConsumerPositionRow)
        .where(_key(group, topic), ConsumerPositionRow.partition == partition)
        .with_for_update()
    )
    if row is None or row.parked_at is None:
        return None
    found = _position(row)
    row.parked_at = None
    row.skip_offset = row.next_offset if skip else None
    row.error = row.error if skip else None
    row.updated_at = now
    return found
