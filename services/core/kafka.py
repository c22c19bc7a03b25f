"""Kafka plumbing: idempotent producer, topic creation and the batch consumer loop.

Invariant of `BatchConsumer`: a batch's offsets are committed only after its handler returned, and the
handler returns only after the DB transaction holding the batch's effects committed. A crash in between
replays the batch; handlers make every effect idempotent, so a replay is a no-op.

A record the client cannot decode (a header name that is not UTF-8) would otherwise raise at every fetch
and stop the partition for good: it is isolated and handed over as an `unreadable` message (or skipped with
an error log), so the records behind it are consumed. aiokafka decodes a record batch from its start, so
the records after it in the same producer batch cannot be decoded either and are handed over the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import stamina
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from services.contracts import topics
from services.core.observability import BATCH_SECONDS, BATCHES, CONSUMER_LAG, get_logger
from services.core.settings import Settings

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
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


BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


def create_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=MAX_MESSAGE_BYTES,
        request_timeout_ms=30_000,
        client_id="smits",
    )


async def create_topics(settings: Settings) -> list[str]:
    """Create the contract's topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="smits-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic(name) for name in topics.ALL]
        missing = [name for name in wanted if name not in existing]
        new = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
            )
            for name in missing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was quicker
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()


class BatchConsumer:
    """Consumes `topic` in batches (`getmany`, bounded) for one consumer group and commits after each batch."""

    def __init__(
        self,
        *,
        settings: Settings,
        topic: str,
        group: str,
        handle: BatchHandler,
        after_handle: Callable[[Sequence[Message]], None] | None = None,
        deliver_unreadable: bool = False,
    ) -> None:
        self.name = group
        self._settings = settings
        self._topic = settings.topic(topic)
        self._group = f"{settings.topic_prefix}{group}"
        self._handle = handle
        self._after_handle = after_handle  # test hook: runs between DB commit and offset commit
        self._deliver_unreadable = deliver_unreadable  # else an undecodable record is logged and skipped
        self._consumer: AIOKafkaConsumer | None = None

    def is_assigned(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=32 * MAX_MESSAGE_BYTES,
            client_id=f"smits-{self.name}",
        )
        if not await start_when_reachable(consumer, self.name, stop):
            return
        self._consumer = consumer
        log.info("consumer started", consumer=self.name, topic=self._topic, group=self._group)
        try:
            while not stop.is_set():
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=self._settings.consumer_fetch_timeout_ms,
                        max_records=self._settings.consumer_max_records,
                    )
                    batch = [_message(record) for records in fetched.values() for record in records]
                except UnicodeDecodeError:
                    batch = await self._isolate_unreadable(consumer)
                if batch and await self._process(batch, stop):
                    await self._commit(consumer, batch)
                await self._report_lag(consumer)
        finally:
            self._consumer = None
            await consumer.stop()
            log.info("consumer stopped", consumer=self.name)

    async def _isolate_unreadable(self, consumer: AIOKafkaConsumer) -> list[Message]:
        """Read one record at a time until the undecodable one: the readable records before it, or it alone
        (as an `unreadable` message, the position moved past it). Bounded: at most a batch's worth of reads."""
        for tp in sorted(consumer.assignment()):
            readable: list[Message] = []
            for _ in range(self._settings.consumer_max_records):
                try:
                    fetched = await consumer.getmany(
                        tp, timeout_ms=self._settings.consumer_fetch_timeout_ms, max_records=1
                    )
                except UnicodeDecodeError as exc:
                    if readable:
                        return readable  # the undecodable record comes alone, in a later batch
                    return self._unreadable(consumer, tp, await consumer.position(tp), exc)
                if not fetched:
                    break
                readable.extend(_message(record) for records in fetched.values() for record in records)
            if readable:
                return readable
        return []

    def _unreadable(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, exc: Exception) -> list[Message]:
        consumer.seek(tp, offset + 1)
        log.error(
            "record cannot be decoded",
            consumer=self.name,
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            error=str(exc),
        )
        if not self._deliver_unreadable:
            return []
        reason = f"{type(exc).__name__}: {exc}"
        return [Message(tp.topic, tp.partition, offset, None, None, (), 0, unreadable=reason)]

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - await consumer.position(tp))
                CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(lag)

    async def _process(self, batch: Sequence[Message], stop: asyncio.Event) -> bool:
        """Run the handler until it succeeds; False if asked to stop first (nothing is committed then)."""
        started = time.perf_counter()
        async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None, wait_max=5.0):
            with attempt:
                if stop.is_set() and attempt.num > 1:
                    return False
                if attempt.num > 1:
                    log.warning("retrying batch", consumer=self.name, attempt=attempt.num, size=len(batch))
                await self._handle(batch)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        if self._after_handle is not None:
            self._after_handle(batch)
        return True

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Sequence[Message]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for message in batch:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        try:
            await consumer.commit(offsets)
            BATCHES.labels(self.name).inc()
        except (CommitFailedError, KafkaError) as exc:
            # Partitions were revoked mid-batch: the new owner replays them, and effects are idempotent.
            log.warning("offset commit failed; batch will be replayed", consumer=self.name, error=str(exc))


def _message(record: object) -> Message:
    return Message(
        topic=record.topic,  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=tuple(record.headers or ()),  # type: ignore[attr-defined]
        timestamp_ms=record.timestamp,  # type: ignore[attr-defined]
    )


async def open_reader(settings: Settings, topic: str, *, wait_s: float = 30.0) -> AIOKafkaConsumer:
    """A started consumer without a group, assigned every partition of `topic`, positioned at the start.

    For tools that read a topic end to end (DLQ replay, tests); it never commits offsets.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    deadline = time.monotonic() + wait_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            await consumer.stop()
            raise RuntimeError(f"no partitions of {topic!r} within {wait_s}s; does it exist (`smits topics create`)?")
        await asyncio.sleep(0.05)
    return consumer


async def start_when_reachable(client: AIOKafkaProducer | AIOKafkaConsumer, what: str, stop: asyncio.Event) -> bool:
    """Start a Kafka client, waiting (with backoff) while the broker is unreachable; False if asked to stop.

    A service started before its broker, or while it restarts, waits for it instead of exiting."""
    delay = 0.5
    while True:
        try:
            await client.start()
            return True
        except KafkaError as exc:
            log.warning("kafka not reachable; waiting", client=what, error=str(exc), retry_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
            return False
        delay = min(delay * 2, 10.0)
