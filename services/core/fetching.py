"""Fetching a batch from Kafka, records the client cannot decode included.

A record the client cannot decode (a header name that is not UTF-8) would otherwise raise at every fetch
and stop the partition for good: it is isolated and handed over as an `unreadable` message (or skipped with
an error log), so the records behind it are consumed. aiokafka decodes a record batch from its start, so
the records after it in the same producer batch cannot be decoded either and are handed over the same way.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.batches import Message
from services.core.observability import get_logger

log = get_logger(__name__)


async def fetch(
    consumer: AIOKafkaConsumer, *, max_records: int, timeout_ms: int, deliver_unreadable: bool, name: str
) -> list[Message]:
    """The next batch (`getmany`, bounded); see the module docstring for undecodable records."""
    try:
        fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    except UnicodeDecodeError:
        return await _isolate_unreadable(
            consumer, max_records=max_records, timeout_ms=timeout_ms, deliver=deliver_unreadable, name=name
        )
    return [message_of(record) for records in fetched.values() for record in records]


async def _isolate_unreadable(
    consumer: AIOKafkaConsumer, *, max_records: int, timeout_ms: int, deliver: bool, name: str
) -> list[Message]:
    """Read one record at a time until the undecodable one: the readable records before it, or it alone
    (as an `unreadable` message, the position moved past it). Bounded: at most a batch's worth of reads."""
    for tp in sorted(consumer.assignment()):
        readable: list[Message] = []
        for _ in range(max_records):
            try:
                fetched = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
            except UnicodeDecodeError as exc:
                if readable:
                    return readable  # the undecodable record comes alone, in a later batch
                return _unreadable(consumer, tp, await consumer.position(tp), exc, deliver=deliver, name=name)
            if not fetched:
                break
            readable.extend(message_of(record) for records in fetched.values() for record in records)
        if readable:
            return readable
    return []


def _unreadable(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, exc: Exception, *, deliver: bool, name: str
) -> list[Message]:
    consumer.seek(tp, offset + 1)
    log.error(
        "record cannot be decoded",
        consumer=name,
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        error=str(exc),
    )
    if not deliver:
        return []
    reason = f"{type(exc).__name__}: {exc}"
    return [
        Message(
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            key=None,
            value=None,
            headers=(),
            timestamp_ms=0,
            unreadable=reason,
        )
    ]


def message_of(record: object) -> Message:
    return Message(
        topic=record.topic,  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=tuple(record.headers or ()),  # type: ignore[attr-defined]
        timestamp_ms=record.timestamp,  # type: ignore[attr-defined]
    )
