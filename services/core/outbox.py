"""Transactional outbox: rows written with the state change, published after commit by `OutboxRelay`.

Each service declares its own table with `OutboxMixin` (e.g. `ingest_outbox`). The relay publishes rows
in id order with the idempotent producer, waits for every ack, then deletes them in the same transaction
that read them. On Postgres an advisory lock lets one relay per table run at a time, so per-key order holds
with several replicas. A crash after the acks and before the delete republishes: consumers dedup.

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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core import parking
from services.core.db import UnitOfWork, UTCDateTime, after_commit, is_postgres, table_of
from services.core.observability import OUTBOX_BACKLOG, OUTBOX_PARKED, OUTBOX_PUBLISHED, get_logger
from services.core.settings import Settings

log = get_logger(__name__)

Headers = list[tuple[str, bytes]]
BACKLOG_EVERY_S = 5.0


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
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

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
            try:
                published = await self.publish_once()
            except Exception:
                log.exception("outbox publish failed; will retry", outbox=self._name)
                published = 0
                await asyncio.sleep(1.0)
            if published == 0:
                self._wake.clear()
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
        """Publish one batch in id order; returns how many rows went out."""
        async with self._uow.begin() as session:
            if is_postgres(session):
                locked = await session.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key)))
                if not locked:
                    return 0
            table = table_of(self._row)
            rows = (
                await session.execute(select(table).order_by(table.c.id).limit(self._settings.outbox_batch_size))
            ).all()
            if not rows:
                return 0
            refused = await self._publish(rows)
            if refused:
                await parking.park(session, self._name, refused)
            await session.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))
        if refused:
            for row, exc in refused:
                log.error("outbox record refused by Kafka; parked", outbox=self._name, id=row.id, error=str(exc))
            with contextlib.suppress(Exception):
                await self.count_parked()
        OUTBOX_PUBLISHED.labels(self._name).inc(len(rows) - len(refused))
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> list[tuple[Any, BaseException]]:
        """Send `rows` in order and wait for every ack; returns the rows refused for good, with the error.

        A retriable error is raised (the caller's transaction rolls back and the batch is tried again). The
        broker refuses a whole record batch when one record in it is too large, so then the rows are sent
        again one at a time, each acked before the next: only the culprit is parked and order holds (rows
        that had gone out are published twice; consumers dedup)."""
        pending: list[tuple[Any, asyncio.Future[Any]]] = []
        refused: list[tuple[Any, BaseException]] = []
        for row in rows:
            try:
                pending.append((row, await self._send(row)))
            except Exception as exc:  # refused before it left the process (e.g. over max_request_size)
                refused.append((row, _permanent_or_raise(exc)))
        outcomes = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        if any(isinstance(outcome, BaseException) and _permanent_or_raise(outcome) for outcome in outcomes):
            log.warning("Kafka refused a record batch; sending one record at a time", outbox=self._name)
            return await self._publish_one_by_one(rows)
        return refused

    async def _publish_one_by_one(self, rows: Sequence[Any]) -> list[tuple[Any, BaseException]]:
        refused: list[tuple[Any, BaseException]] = []
        for row in rows:
            try:
                await (await self._send(row))
            except Exception as exc:
                refused.append((row, _permanent_or_raise(exc)))
        return refused

    async def _send(self, row: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send(
            self._settings.topic(row.topic), value=row.value, key=row.key, headers=decode_headers(row.headers)
        )
        return future


def _permanent_or_raise(exc: BaseException) -> BaseException:
    """`exc` when retrying cannot help (the row is to be parked); raises it otherwise."""
    if not parking.is_permanent(exc):
        raise exc
    return exc
