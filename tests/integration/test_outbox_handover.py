"""Records handed to the relay after commit are published from memory, and the outbox table stays the truth:
each record goes out once, in outbox order, whether memory has it, loses it or another relay gets there first.

Real Kafka, both databases.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import func, select

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.outbox import OutboxRecord, OutboxRelay, StoredRecord, add_to_outbox
from services.core.settings import Settings
from services.trigger_ingest.persistence import IngestOutboxRow
from tests.integration.test_outbox_parking import db_settings, producer, publish_all, uow
from tests.support.events import tuned
from tests.support.kafka import read_topic

__all__ = ["db_settings", "producer", "uow"]  # fixtures


def records(*names: str) -> list[OutboxRecord]:
    return [OutboxRecord(topics.TRIGGERS_ACCEPTED, b"k", name.encode(), [("n", name.encode())]) for name in names]


async def store(uow: UnitOfWork, *names: str) -> list[StoredRecord]:
    async with uow.begin() as session:
        return await add_to_outbox(session, IngestOutboxRow, records(*names), now=datetime.now(UTC))


async def published(settings: Settings) -> list[bytes]:
    return [record.value for record in await read_topic(settings, topics.TRIGGERS_ACCEPTED)]


async def test_stored_records_come_back_in_order_with_ascending_ids(uow: UnitOfWork) -> None:
    stored = await store(uow, *(f"r{n}" for n in range(300)))
    assert [record.value for record in stored] == [f"r{n}".encode() for n in range(300)]
    assert [record.id for record in stored] == sorted({record.id for record in stored})
    assert stored[0].sent_headers == [("n", b"r0")]


async def test_a_handed_batch_is_published_once_and_leaves_the_table_empty(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    relay.hand_over(await store(uow, "a", "b", "c"))
    assert await asyncio.wait_for(relay.publish_once(), 60) == 3
    assert await relay.publish_once() == 0  # nothing left to read back
    assert await relay.backlog() == 0
    first, *_ = await read_topic(db_settings, topics.TRIGGERS_ACCEPTED)
    assert (first.value, list(first.headers)) == (b"a", [("n", b"a")])
    assert await published(db_settings) == [b"a", b"b", b"c"]


async def test_what_memory_lost_is_published_from_the_table(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    """A crash after the commit and before the publish: a new process's relay finds the rows in the table."""
    await store(uow, "a", "b")  # committed, never handed over (the process died)
    restarted = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await asyncio.wait_for(publish_all(restarted), 60)
    assert await published(db_settings) == [b"a", b"b"]
    assert await restarted.backlog() == 0


async def test_older_rows_in_the_table_go_out_before_a_handed_batch(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await store(uow, "old-1", "old-2")  # e.g. left by a publish that failed, or a skipped record's dead letter
    relay.hand_over(await store(uow, "new-1", "new-2"))
    await asyncio.wait_for(publish_all(relay), 60)
    assert await published(db_settings) == [b"old-1", b"old-2", b"new-1", b"new-2"]
    assert await relay.backlog() == 0


async def test_a_handed_batch_another_relay_published_is_not_sent_again(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    mine = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    small = tuned(db_settings, outbox_batch_size=2)
    other = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=small)  # a replica
    mine.hand_over(await store(uow, "a", "b"))
    mine.hand_over(await store(uow, "c"))
    assert await asyncio.wait_for(other.publish_once(), 60) == 2  # a and b, read back from the table
    assert await asyncio.wait_for(mine.publish_once(), 60) == 1  # the first batch is passed over, c goes out
    assert await mine.publish_once() == 0
    assert await published(db_settings) == [b"a", b"b", b"c"]


async def test_many_small_handed_batches_go_out_together_up_to_the_batch_size(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    """A trickle of triggers makes many small committed batches; one transaction and one round of acks publishes
    as many of them as fit `outbox_batch_size` (a batch bigger than that alone still goes out whole)."""
    relay = OutboxRelay(
        uow=uow, row=IngestOutboxRow, producer=producer, settings=tuned(db_settings, outbox_batch_size=3)
    )
    for names in (("a",), ("b",), ("c",), ("d", "e"), ("f", "g", "h", "i")):
        relay.hand_over(await store(uow, *names))
    assert await asyncio.wait_for(relay.publish_once(), 60) == 3  # a, b and c; d and e would make 5
    assert await asyncio.wait_for(relay.publish_once(), 60) == 2  # d and e; f..i would make 6
    assert await asyncio.wait_for(relay.publish_once(), 60) == 4  # f..i, a batch of 4 on its own
    assert await relay.publish_once() == 0
    assert await published(db_settings) == [name.encode() for name in "abcdefghi"]
    assert await relay.backlog() == 0


async def test_taking_handed_batches_stops_at_one_behind_an_older_row(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    """Another process's row stored between two handed batches goes out between them, in id order."""
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    relay.hand_over(await store(uow, "a", "b"))
    await store(uow, "other")  # committed by a replica, never handed to this relay
    relay.hand_over(await store(uow, "c"))
    assert await asyncio.wait_for(relay.publish_once(), 60) == 2  # a and b only: `other` is older than c
    await asyncio.wait_for(publish_all(relay), 60)
    assert await published(db_settings) == [b"a", b"b", b"other", b"c"]
    assert await relay.backlog() == 0


async def test_a_relay_another_one_locks_out_waits_instead_of_spinning(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    if not db_settings.database_url.get_secret_value().startswith("postgresql"):
        pytest.skip("the advisory lock is PostgreSQL's")
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    calls = 0
    publish_once = relay.publish_once

    async def counted() -> int:
        nonlocal calls
        calls += 1
        return await publish_once()

    relay.publish_once = counted  # type: ignore[method-assign]
    relay.hand_over(await store(uow, "a"))
    stop = asyncio.Event()
    async with uow.begin() as session:  # another relay's transaction, holding the lock
        await session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(b"ingest_outbox"))))
        running = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(1.0)
        stop.set()
        await running
    assert calls <= 2 + 1.0 / db_settings.outbox_poll_interval_s  # one attempt per poll interval, not a busy loop
    assert await relay.backlog() == 1  # still there, for whoever holds the lock (or this relay, later)


class FailingOnce:
    """A producer whose first send fails as a broker outage would (retriable), then works."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self._real = real
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _fail_once(self) -> None:
        if not self.failed:
            self.failed = True
            raise KafkaConnectionError("broker unreachable")

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        self._fail_once()
        return await self._real.send(*args, **kwargs)

    async def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._fail_once()
        return await self._real.send_batch(*args, **kwargs)


async def test_a_handed_batch_whose_publish_failed_is_published_from_the_table(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    flaky: Any = FailingOnce(producer)
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=flaky, settings=db_settings)
    relay.hand_over(await store(uow, "a", "b"))
    relay.hand_over(await store(uow, "c"))
    with pytest.raises(KafkaConnectionError):
        await relay.publish_once()  # rolled back: the rows stay
    assert await relay.backlog() == 3
    await asyncio.wait_for(publish_all(relay), 60)
    assert await published(db_settings) == [b"a", b"b", b"c"]
    assert await relay.backlog() == 0
