"""Pure pieces of the batch edge: which records of a batch a flow still owes, the new positions, the
retry schedule, and the narrowing of a failing batch down to the record that fails.

No I/O here: `BatchConsumer` (core.kafka) runs these against the database and the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import exc as sa_exc

from services.core.bounds import describe
from services.core.positions import Position


@dataclass(kw_only=True, frozen=True, slots=True)
class Message:
    """A consumed record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    unreadable: str | None = None
    """Why the client could not decode this record (then key, value and headers are empty)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one transaction does with a batch, given the stored positions of its partitions."""

    fresh: list[Message] = field(default_factory=list)
    """Records the flow has not applied yet, in batch order."""
    skipped: list[tuple[Message, str]] = field(default_factory=list)
    """Records an operator chose to skip (`smits consumer resume --skip-offset`), with the parking error."""
    held: list[Position] = field(default_factory=list)
    """Parked partitions: none of their records is applied; the consumer pauses them."""
    moves: list[Position] = field(default_factory=list)
    """New positions to store (only partitions that moved or whose pending skip is done)."""


def plan(batch: Sequence[Message], stored: Mapping[int, Position]) -> Plan:
    """Drop records below the stored position (a replay after a crash between the DB and Kafka commits),
    hold parked partitions, divert the one record an operator skipped; everything else is fresh."""
    result = Plan()
    ends: dict[int, int] = {}
    for message in batch:
        position = stored[message.partition]
        if position.parked:
            continue
        if message.offset < position.next_offset:
            continue
        ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
        if message.offset == position.skip_offset:
            result.skipped.append((message, position.error or "skipped by an operator"))
        else:
            result.fresh.append(message)
    result.held.extend(position for _, position in sorted(stored.items()) if position.parked)
    for partition, end in sorted(ends.items()):
        position = stored[partition]
        skip = position.skip_offset if position.skip_offset is not None and position.skip_offset >= end else None
        result.moves.append(replace(position, next_offset=end, skip_offset=skip))
    return result


def next_offsets(batch: Sequence[Message]) -> dict[int, int]:
    """Per partition, the offset after the last record of `batch` (what Kafka's commit records)."""
    ends: dict[int, int] = {}
    for message in batch:
        ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
    return ends


def by_partition(batch: Sequence[Message]) -> list[list[Message]]:
    """The batch split per partition (partitions in first-seen order, records in batch order)."""
    parts: dict[int, list[Message]] = {}
    for message in batch:
        parts.setdefault(message.partition, []).append(message)
    return list(parts.values())


def backoff_s(attempt: int, *, base_s: float, cap_s: float = 5.0) -> float:
    """Delay before retry number `attempt` (1 = the first retry): doubling from `base_s`, at most `cap_s`."""
    return float(min(cap_s, base_s * 2.0 ** (attempt - 1)))


TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
"""Connection, transaction rollback (serialization, deadlock), resources, operator intervention (shutdown,
starting up), system: the database's state, not the record's."""
QUERY_CANCELED = "57014"  # a statement timeout may be the batch's own doing: narrowing it can help


def is_transient(error: BaseException) -> bool:
    """An outage rather than a bad record: the database or the network is unreachable or busy. Such
    failures are retried without bound and never park a partition (an outage would park every one)."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate != QUERY_CANCELED and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return True
    return isinstance(
        error, OSError | TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError
    )


@dataclass(frozen=True, slots=True)
class Stuck:
    """The first record of a partition that keeps failing on its own; the partition parks at it."""

    message: Message
    error: str


Apply = Callable[[Sequence[Message], int], Awaitable[BaseException | None]]
"""Applies records in one transaction with up to that many attempts; the last error, or None on success."""


async def narrow(batch: Sequence[Message], apply: Apply, *, record_attempts: int) -> list[Stuck]:
    """After `batch` as a whole kept failing: apply each partition's slice once; a slice that fails is
    applied record by record (each record with `record_attempts`), and its first failing record stops the
    partition. Records before it are applied; records after it are not. Returns the stuck records."""
    stuck: list[Stuck] = []
    parts = by_partition(batch)
    for part in parts:
        if len(parts) > 1 and await apply(part, 1) is None:
            continue
        for message in part:
            error = await apply([message], record_attempts)
            if error is not None:
                stuck.append(Stuck(message, describe(error)))
                break
    return stuck
