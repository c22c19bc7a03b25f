"""The tamper-evident audit log: every write by a principal (and every sign-in, failed ones too) appends one
record in the same transaction as the write.

Records are hash-chained: each holds the SHA-256 of its own content and of the record before it, so editing,
deleting or reordering any record breaks the chain from that point; a single head row (locked while appending,
so records are chained in commit order) holds the latest sequence number and hash, and every
`CHECKPOINT_EVERY` records a checkpoint row anchors the head hash. `verify` walks the chain and names the first
record that does not fit. Only digests of the before/after state are kept, plus a short bounded `detail`."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.bounds import bounded
from services.core.db import Base, UTCDateTime, is_postgres
from services.core.identity.model import Caller

GENESIS = "0" * 64
CHECKPOINT_EVERY = 100


class AuditRow(Base):
    __tablename__ = "core_audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    principal: Mapped[str] = mapped_column(String(400), index=True)
    method: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(400), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    before_digest: Mapped[str | None] = mapped_column(String(64))
    after_digest: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's head: one row (id 1), locked by every append."""

    __tablename__ = "core_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    __tablename__ = "core_audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


def state_digest(state: object) -> str | None:
    """SHA-256 of a state's canonical JSON (sorted keys); None for no state (a create's before, a delete's after)."""
    if state is None:
        return None
    return hashlib.sha256(orjson.dumps(state, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


def _content(row: AuditRow) -> bytes:
    """What a record's hash covers: every field but the hash itself (the previous record's hash included)."""
    fields = as_record(row)
    del fields["hash"]
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(row: AuditRow) -> str:
    return hashlib.sha256(_content(row)).hexdigest()


def _detail(detail: Mapping[str, object] | None) -> dict[str, Any]:
    """A short, storable detail: each value's text bounded (an audit record is evidence, not a copy)."""
    if not detail:
        return {}
    kept = [(key, value) for key, value in detail.items() if value is not None][:20]
    return {bounded(str(key), 100): bounded(str(value), 500) for key, value in kept}


async def _head(session: AsyncSession) -> AuditHeadRow:
    statement = select(AuditHeadRow).where(AuditHeadRow.id == 1)
    if is_postgres(session):
        statement = statement.with_for_update()
    head = (await session.scalars(statement)).first()
    if head is None:
        head = AuditHeadRow(id=1, seq=0, hash=GENESIS)
        session.add(head)
        await session.flush()
    return head


async def record(
    session: AsyncSession,
    *,
    principal: str,
    method: str,
    action: str,
    target: str,
    now: datetime,
    key_id: str | None = None,
    request_id: str | None = None,
    outcome: str = "ok",
    before: object = None,
    after: object = None,
    detail: Mapping[str, object] | None = None,
) -> AuditRow:
    """Append one record to the chain in `session`'s transaction (it commits or rolls back with the write)."""
    head = await _head(session)
    row = AuditRow(
        seq=head.seq + 1,
        at=now,
        principal=bounded(principal, 400),
        method=method,
        key_id=key_id,
        request_id=request_id,
        action=action,
        target=bounded(target, 400),
        outcome=outcome,
        before_digest=state_digest(before),
        after_digest=state_digest(after),
        detail=_detail(detail),
        prev_hash=head.hash,
        hash="",
    )
    row.hash = chain_hash(row)
    session.add(row)
    head.seq, head.hash = row.seq, row.hash
    if row.seq % CHECKPOINT_EVERY == 0:
        session.add(AuditCheckpointRow(seq=row.seq, hash=row.hash, at=now))
    await session.flush()
    return row


async def record_by(
    session: AsyncSession,
    caller: Caller,
    *,
    action: str,
    target: str,
    now: datetime,
    request_id: str | None = None,
    before: object = None,
    after: object = None,
    detail: Mapping[str, object] | None = None,
) -> AuditRow:
    """`record` for an action by `caller`."""
    return await record(
        session,
        principal=caller.label,
        method=caller.method.value,
        key_id=str(caller.key_id) if caller.key_id else None,
        action=action,
        target=target,
        now=now,
        request_id=request_id,
        before=before,
        after=after,
        detail=detail,
    )


@dataclass(frozen=True, kw_only=True)
class Broken:
    """The first record that does not fit the chain, and why."""

    seq: int
    reason: str


async def records(session: AsyncSession, *, after_seq: int = 0, batch: int = 1000) -> AsyncIterator[AuditRow]:
    """Every record from `after_seq` on, in chain order, read in batches."""
    while True:
        rows = (
            await session.scalars(select(AuditRow).where(AuditRow.seq > after_seq).order_by(AuditRow.seq).limit(batch))
        ).all()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after_seq = rows[-1].seq


async def verify(session: AsyncSession) -> tuple[int, Broken | None]:
    """Walk the whole chain: how many records fit, and the first that does not (None if all do)."""
    checkpoints = dict((await session.execute(select(AuditCheckpointRow.seq, AuditCheckpointRow.hash))).all())
    expected_seq, previous, count = 1, GENESIS, 0
    async for row in records(session):
        if row.seq != expected_seq:
            return count, Broken(seq=expected_seq, reason=f"record {expected_seq} is missing (next is {row.seq})")
        if row.prev_hash != previous:
            return count, Broken(seq=row.seq, reason="does not follow the record before it (prev_hash differs)")
        if chain_hash(row) != row.hash:
            return count, Broken(seq=row.seq, reason="its content was changed (hash differs)")
        if row.seq in checkpoints and checkpoints.pop(row.seq) != row.hash:
            return count, Broken(seq=row.seq, reason="differs from the checkpoint anchored at it")
        expected_seq, previous, count = row.seq + 1, row.hash, count + 1
    head = (await session.scalars(select(AuditHeadRow).where(AuditHeadRow.id == 1))).first()
    if head is not None and (head.seq, head.hash) != (count, previous):
        return count, Broken(seq=count + 1, reason=f"the chain ends at {count} but its head says {head.seq}")
    if checkpoints:
        first = min(checkpoints)
        return count, Broken(seq=first, reason=f"record {first} is missing (a checkpoint anchors it)")
    return count, None


async def search(
    session: AsyncSession,
    *,
    principal: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Records newest first, filtered; `before_seq` continues a page (keyset on the sequence number)."""
    statement = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
    if principal is not None:
        statement = statement.where(AuditRow.principal == principal)
    if target is not None:
        statement = statement.where(AuditRow.target == target)
    if since is not None:
        statement = statement.where(AuditRow.at >= since)
    if before_seq is not None:
        statement = statement.where(AuditRow.seq < before_seq)
    return list((await session.scalars(statement)).all())


def as_record(row: AuditRow) -> dict[str, Any]:
    """One record with every field (so an export or a page can be re-verified)."""
    return {
        "seq": row.seq,
        "at": row.at.isoformat(),
        "principal": row.principal,
        "method": row.method,
        "key_id": row.key_id,
        "request_id": row.request_id,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "before_digest": row.before_digest,
        "after_digest": row.after_digest,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def export_line(row: AuditRow) -> bytes:
    """One record as a JSON line for auditors."""
    return orjson.dumps(as_record(row))
