"""Transactional outbox: rows written with the state change, published after commit by `OutboxRelay`.

Each service declares its own table with `OutboxMixin` (e.g. `ingest_outbox`). The relay publishes rows
in id order with the idempotent producer, waits for every ack, then deletes them in the same transaction
that read them. On Postgres an advisory lock lets one relay per table run at a time, so per-key order holds
with several replicas. A crash after the acks and before the delete republishes: consumers dedup.

A flow that stores its records with `add_to_outbox` may hand them to the relay once its transaction has
committed (`OutboxRelay.hand_over`): the relay then publishes them from memory instead of reading them back.
The table stays the truth: a handed batch goes out only while no older row waits in the table (else the
table is read, in id order, first), its rows are deleted (`DELETE ... RETURNING`) in the transaction that
publishes them, and only the rows that delete returned are sent, so rows another relay published are not
sent again. Whatever memory loses (a crash, a failed publish, a full hand-over queue) the table still holds.

A row Kafka refuses for good (too large, invalid) is parked (`services.core.parking`) in the same
transaction instead of being retried for ever; the rows behind it go out in order. Any other error rolls
the batch back and it is tried again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core import parking
from services.core.db import UnitOfWork, UTCDateTime, after_commit, is_postgres, table_of
from services.core.kafka import MAX_MESSAGE_BYTES
from services.core.observability import OUTBOX_BACKLOG, OUTBOX_PARKED, OUTBOX_PUBLISHED, get_logger
from services.core.settings import Settings

log = get_logger(__name__)

Headers = list[tuple[str, bytes]]
BACKLOG_EVERY_S = 5.0
_PARTITIONER = DefaultPartitioner()
"""The producer's default partitioner (`create_producer` sets no other), for the batches the relay builds."""
SMALL_RECORD_BYTES = 64 * 1024
"""Below this (value, key and headers together) a record surely fits a request; above, its size is computed."""
KEYED_PARTITIONS_MAX = 10_000
"""Keys whose partition a relay remembers (per partition list); past it, it starts again."""
HANDED_MAX_RECORDS = 20_000
"""Records a relay keeps in memory from `hand_over`; past it the oldest handed batches are forgotten (their
rows are in the table, which the relay reads when memory has nothing)."""


class OutboxMixin:
    """Columns of an outbox table. `topic` is the name after the prefix; headers are JSON (base64 values)."""

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: datetime.now(UTC))


def encode_headers(headers: Headers) -> str:
    return orjson.dumps([[name, base64.b64encode(value).decode()] for name, value in headers]).decode()


def decode_headers(text: str) -> Headers:
    return [(name, base64.b64decode(value)) for name, value in orjson.loads(text)]


def outbox_values(
    *, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = (), now: datetime
) -> dict[str, Any]:
    """Column values for one outbox row, for bulk inserts; `now` is the caller's clock (no hidden reads)."""
    return {
        "topic": topic,
        "key": key,
        "value": value,
        "headers": encode_headers(list(headers)),
        "created_at": now,
    }


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A record a flow wants published, before it is stored."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass(kw_only=True, frozen=True, slots=True)
class StoredRecord:
    """An outbox row, as stored (`headers` is the stored text) and as sent (`sent_headers`)."""

    id: int
    topic: str
    key: bytes | None
    value: bytes
    headers: str
    sent_headers: Headers
    created_at: datetime


def _stored(row: Any) -> StoredRecord:
    return StoredRecord(
        id=row.id,
        topic=row.topic,
        key=row.key,
        value=row.value,
        headers=row.headers,
        sent_headers=decode_headers(row.headers),
        created_at=row.created_at,
    )


async def add_to_outbox(
    session: AsyncSession, row: type[OutboxMixin], records: Sequence[OutboxRecord], *, now: datetime
) -> list[StoredRecord]:
    """Store `records` in the outbox table of `row`, in order; returns them with their ids (ascending).

    PostgreSQL: one statement with a fixed text (arrays through `unnest`, in order of their position, so the
    sequence hands out ids in that order). SQLite: a bulk insert whose ids come back in parameter order."""
    if not records:
        return []
    headers = [encode_headers(record.headers) for record in records]
    table = table_of(row)  # type: ignore[arg-type]
    if is_postgres(session):
        statement = (  # the table name comes from the mapped class, never from input
            f"INSERT INTO {table.name} (topic, key, value, headers, created_at) "  # noqa: S608
            "SELECT u.topic, u.key, u.value, u.headers, $5 "
            "FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[]) "
            "WITH ORDINALITY AS u(topic, key, value, headers, n) ORDER BY u.n RETURNING id"
        )
        columns = (
            [record.topic for record in records],
            [record.key for record in records],
            [record.value for record in records],
            headers,
            now,
        )
        result = await (await session.connection()).exec_driver_sql(statement, columns)
        ids = sorted(id_ for (id_,) in result.all())
    else:
        values = [
            {"topic": r.topic, "key": r.key, "value": r.value, "headers": h, "created_at": now}
            for r, h in zip(records, headers, strict=True)
        ]
        returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = [id_ for (id_,) in (await session.execute(returning, values)).all()]
    return [
        StoredRecord(
            id=id_,
            topic=record.topic,
            key=record.key,
            value=record.value,
            headers=text,
            sent_headers=record.headers,
            created_at=now,
        )
        for id_, record, text in zip(ids, records, headers, strict=True)
    ]


class OutboxRelay:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        row: type[OutboxMixin],
        producer: AIOKafkaProducer,
        settings: Settings,
    ) -> None:
        self._uow = uow
        self._row: Any = row
        self._producer = producer
        self._settings = settings
        self._name = row.__tablename__  # type: ignore[attr-defined]
        self._lock_key = zlib.crc32(self._name.encode())
        table = table_of(row)  # type: ignore[arg-type]
        self._lock_statement = select(func.pg_try_advisory_xact_lock(self._lock_key))
        self._read_statement = select(table).order_by(table.c.id).limit(settings.outbox_batch_size)
        self._older_statement = select(table.c.id).where(table.c.id < bindparam("first")).limit(1)
        self._delete_any = f"DELETE FROM {table.name} WHERE id = ANY($1::bigint[]) RETURNING id"  # noqa: S608
        self._wake = asyncio.Event()
        self._handed: deque[list[StoredRecord]] = deque()
        self._handed_records = 0
        self._keyed: dict[tuple[int, ...], dict[bytes, int]] = {}
        """Partition of each key seen, per partition list (the partitioner hashes in pure Python)."""

    def wake(self) -> None:
        self._wake.set()

    def hand_over(self, records: Sequence[StoredRecord]) -> None:
        """Publish `records` (from `add_to_outbox`, in id order) from memory; call only once the transaction
        that stored them has committed. See the module docstring for what keeps this safe."""
        if records:
            self._handed.append(list(records))
            self._handed_records += len(records)
            while self._handed_records > HANDED_MAX_RECORDS:
                self._handed_records -= len(self._handed.popleft())
        self.wake()

    def wake_after_commit(self, session: AsyncSession) -> None:
        """Publish promptly once the caller's transaction commits (the poll would find it anyway)."""
        after_commit(session, self.wake)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox relay started", outbox=self._name)
        counted_at = 0.0
        while not stop.is_set():
            if time.monotonic() - counted_at > BACKLOG_EVERY_S:
                counted_at = time.monotonic()
                with contextlib.suppress(Exception):  # a metric must never stop the relay
                    OUTBOX_BACKLOG.labels(self._name).set(await self.backlog())
                    await self.count_parked()
            self._wake.clear()  # before publishing: a wake-up meanwhile is not lost
            try:
                published = await self.publish_once()
            except Exception:
                log.exception("outbox publish failed; will retry", outbox=self._name)
                published = 0
                await asyncio.sleep(1.0)
            if published == 0:  # nothing to publish, or another relay holds the lock: wait, never spin
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.outbox_poll_interval_s)
        log.info("outbox relay stopped", outbox=self._name)

    async def backlog(self) -> int:
        async with self._uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(self._row)) or 0)

    async def count_parked(self) -> int:
        """Parked records of this outbox; also sets the `smits_outbox_parked_records` gauge."""
        async with self._uow.begin() as session:
            count = (await parking.count_parked(session, [self._name])).get(self._name, 0)
        OUTBOX_PARKED.labels(self._name).set(count)
        return count

    async def publish_once(self) -> int:
        """Publish one batch in id order (a handed one when no older row waits); returns how many rows went out."""
        async with self._uow.begin() as session:
            if is_postgres(session) and not await session.scalar(self._lock_statement):
                return 0
            handed = await self._take_handed(session)
            if handed is None:
                records = [_stored(row) for row in (await session.execute(self._read_statement)).all()]
            else:
                records = handed
            if not records:
                return 0
            refused = await self._publish(records)
            if refused:
                await parking.park(session, self._name, refused)
            if handed is None:
                await self._delete(session, [record.id for record in records])
        if refused:
            for record, exc in refused:
                log.error("outbox record refused by Kafka; parked", outbox=self._name, id=record.id, error=str(exc))
            with contextlib.suppress(Exception):
                await self.count_parked()
        OUTBOX_PUBLISHED.labels(self._name).inc(len(records) - len(refused))
        return len(records)

    async def _take_handed(self, session: AsyncSession) -> list[StoredRecord] | None:
        """Handed batches, oldest first, as one batch of up to `outbox_batch_size` records (the first whatever
        its size): their rows still in the table, deleted in this transaction (so published once). Taking stops
        at a batch behind an older row in the table (it goes first, read back); None when nothing was taken. A
        batch whose rows are all gone (another relay published them) is passed over.

        Many small batches (a trickle of triggers) thus go out in one transaction and one round of acks, not one
        each: a relay taking one per round fell behind a consumer committing small batches faster than that."""
        taken: list[StoredRecord] = []
        while self._handed:
            batch = self._handed[0]
            if taken and len(taken) + len(batch) > self._settings.outbox_batch_size:
                break
            if await session.scalar(self._older_statement, {"first": batch[0].id}) is not None:
                break
            self._handed.popleft()
            self._handed_records -= len(batch)
            present = await self._delete(session, [record.id for record in batch])
            taken += [record for record in batch if record.id in present]
        return taken or None

    async def _delete(self, session: AsyncSession, ids: list[int]) -> set[int]:
        """Delete the rows `ids`; the ids that were there. PostgreSQL: one statement text whatever their number."""
        if is_postgres(session):
            deleted = (await (await session.connection()).exec_driver_sql(self._delete_any, (ids,))).all()
        else:
            table = table_of(self._row)
            deleted = (await session.execute(delete(table).where(table.c.id.in_(ids)).returning(table.c.id))).all()
        return {id_ for (id_,) in deleted}

    async def _publish(self, rows: Sequence[StoredRecord]) -> list[tuple[StoredRecord, BaseException]]:
        """Send `rows` in order and wait for every ack; returns the rows refused for good, with the error.

        The rows go out as record batches built here, one run per partition in id order (`send_batch`: far
        less work per record than `send`). A retriable error is raised (the caller's transaction rolls back
        and the batch is tried again). The broker refuses a whole record batch when one record in it is too
        large, so then the rows are sent again one at a time, each acked before the next: only the culprit is
        parked and order holds (rows that had gone out are published twice; consumers dedup)."""
        try:
            futures = await self._send_batches(rows)
        except Exception as exc:  # refused before it left the process
            _permanent_or_raise(exc)
            futures = []
            outcomes: list[Any] = [exc]
        else:
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        if any(isinstance(outcome, BaseException) and _permanent_or_raise(outcome) for outcome in outcomes):
            log.warning("Kafka refused a record batch; sending one record at a time", outbox=self._name)
            return await self._publish_one_by_one(rows)
        return []

    async def _send_batches(self, rows: Sequence[StoredRecord]) -> list[asyncio.Future[Any]]:
        """Hand `rows` to the producer as record batches (per partition, in order); the futures of their acks.

        Partitions are chosen as `send` chooses them (the producer's default partitioner: by key hash, a
        random one without a key), so a record lands where `_publish_one_by_one` would put it."""
        runs: dict[tuple[str, int], list[StoredRecord]] = {}
        targets: dict[str, tuple[str, dict[bytes, int], list[int]]] = {}  # outbox topic → Kafka topic, partitions
        for row in rows:
            _check_size(row)  # before any batch leaves: a refused batch would spend the producer's sequence
            target = targets.get(row.topic)
            if target is None:
                topic = self._settings.topic(row.topic)
                partitions = sorted(await self._producer.partitions_for(topic))
                target = targets[row.topic] = (topic, self._keyed.setdefault(tuple(partitions), {}), partitions)
            topic, keyed, partitions = target
            partition = keyed.get(row.key) if row.key is not None else None
            if partition is None:
                partition = int(_PARTITIONER(row.key, partitions, partitions))
                if row.key is not None:
                    if len(keyed) >= KEYED_PARTITIONS_MAX:
                        keyed.clear()
                    keyed[row.key] = partition
            runs.setdefault((topic, partition), []).append(row)
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), run in runs.items():
            batch = self._producer.create_batch()
            for row in run:
                if batch.append(key=row.key, value=row.value, timestamp=None, headers=row.sent_headers) is None:
                    futures.append(await self._producer.send_batch(batch, topic, partition=partition))
                    batch = self._producer.create_batch()
                    batch.append(key=row.key, value=row.value, timestamp=None, headers=row.sent_headers)
            futures.append(await self._producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _publish_one_by_one(self, rows: Sequence[StoredRecord]) -> list[tuple[StoredRecord, BaseException]]:
        refused: list[tuple[StoredRecord, BaseException]] = []
        for row in rows:
            try:
                await (await self._send(row))
            except Exception as exc:
                refused.append((row, _permanent_or_raise(exc)))
        return refused

    async def _send(self, row: StoredRecord) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send(
            self._settings.topic(row.topic), value=row.value, key=row.key, headers=row.sent_headers
        )
        return future


def _check_size(row: StoredRecord) -> None:
    """Refuse a record over the producer's `max_request_size` as `send` does, before it goes into a batch."""
    rough = len(row.value) + len(row.key or b"") + len(row.headers)  # stored headers: base64, so longer than sent
    if rough > SMALL_RECORD_BYTES:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(row.key, row.value, row.sent_headers)
        if size > MAX_MESSAGE_BYTES:
            raise MessageSizeTooLargeError(f"the record is {size} bytes; max_request_size is {MAX_MESSAGE_BYTES}")


def _permanent_or_raise(exc: BaseException) -> BaseException:
    """`exc` when retrying cannot help (the row is to be parked); raises it otherwise."""
    if not parking.is_permanent(exc):
        raise exc
    return exc
