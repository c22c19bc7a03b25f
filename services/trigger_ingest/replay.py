"""`smits dlq replay` and `POST /v1/dead-letters/{id}/replay`: re-publish dead-lettered records to the input
topic, without the error headers.

Both read `triggers-dlt` up to its end at the time of the call, so a replay that is rejected again cannot loop.
Each record keeps its original key, value and headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contracts import topics
from services.core.kafka import create_producer, open_reader
from services.core.observability import get_logger
from services.core.settings import Settings
from services.trigger_ingest.dead_letters import is_dead_letter_of, replayable_headers, truncation_of

log = get_logger(__name__)


async def replay_dead_letters(settings: Settings, *, since: datetime | None = None, limit: int | None = None) -> int:
    """Re-publish up to `limit` dead letters (all when None) recorded at or after `since`; returns the count."""
    consumer = await open_reader(settings, settings.topic(topics.TRIGGERS_DLT))
    producer = create_producer(settings)
    await producer.start()
    try:
        partitions = sorted(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        await _seek(consumer, partitions, since)
        pending: list[asyncio.Future[Any]] = []
        target = settings.topic(topics.TRIGGERS)
        async for record in _records_until(consumer, end):
            if limit is not None and len(pending) >= limit:
                break
            headers = replayable_headers(record.headers)
            pending.append(await producer.send(target, value=record.value, key=record.key, headers=headers))
        await asyncio.gather(*pending)
        log.info("dead letters replayed", count=len(pending), since=since.isoformat() if since else None)
        return len(pending)
    finally:
        await producer.stop()
        await consumer.stop()


CLOCK_MARGIN = timedelta(minutes=5)
"""How long before a rejection was recorded its dead letter may be stamped (clocks of replicas differ); the
search starts there."""


@dataclass(frozen=True, kw_only=True)
class Replayed:
    """Where a replayed dead letter went, and what its dead letter had cut from the original, if anything."""

    topic: str
    partition: int
    offset: int
    truncated: str | None


async def replay_one(
    settings: Settings,
    producer: AIOKafkaProducer,
    *,
    topic: str,
    partition: int,
    offset: int,
    recorded_at: datetime,
) -> Replayed | None:
    """Re-publish the dead letter of the record once at `topic`/`partition`/`offset` (rejected at
    `recorded_at`); None when `triggers-dlt` does not hold it (not published yet, or past its retention).

    The search starts at the dead letter's time, so it reads the records dead-lettered since, not the topic."""
    consumer = await open_reader(settings, settings.topic(topics.TRIGGERS_DLT))
    try:
        partitions = sorted(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        await _seek(consumer, partitions, recorded_at - CLOCK_MARGIN)
        async for record in _records_until(consumer, end):
            if is_dead_letter_of(record.headers, topic=topic, partition=partition, offset=offset):
                target = settings.topic(topics.TRIGGERS)
                headers = replayable_headers(record.headers)
                sent = await producer.send_and_wait(target, value=record.value, key=record.key, headers=headers)
                log.info("dead letter replayed", topic=topic, partition=partition, offset=offset)
                return Replayed(
                    topic=target, partition=sent.partition, offset=sent.offset, truncated=truncation_of(record.headers)
                )
        return None
    finally:
        await consumer.stop()


async def _seek(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: datetime | None) -> None:
    if since is None:
        await consumer.seek_to_beginning(*partitions)
        return
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    for tp in partitions:
        if found.get(tp) is None:
            await consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found[tp].offset)


async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return True
    return False


async def _records_until(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> AsyncIterator[Any]:
    """Yield records until every partition's position reached the end offset taken at the start."""
    while await _behind(consumer, end):
        fetched = await consumer.getmany(timeout_ms=1000)
        for tp, records in fetched.items():
            for record in records:
                if record.offset < end[tp]:
                    yield record
