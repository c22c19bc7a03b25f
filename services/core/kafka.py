"""Kafka plumbing: idempotent producer, topic creation and the batch consumer that owns a batch's edge.

Invariants of `BatchConsumer`: it opens the unit of work, hands the flow only records past the stored
position of their partition, stores the new positions in the same transaction as the flow's effects,
commits, runs the after-commit hooks, and only then commits offsets to Kafka. A crash between the two
commits replays the batch from Kafka, and the stored positions drop it before the flow sees it. A batch
that keeps failing is retried a bounded number of times (`SMITS_CONSUMER_MAX_ATTEMPTS`), then narrowed to
the record that fails; that record's partition is parked (paused, reported by `/readyz` and
`smits_consumer_parked_partitions`) until `smits consumer resume`, while the other partitions flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core import batches, positions
from services.core.assignment import Assignment
from services.core.batches import Message as Message
from services.core.bounds import describe
from services.core.db import UnitOfWork, after_commit
from services.core.fetching import fetch
from services.core.observability import BATCH_SECONDS, BATCHES, CONSUMER_LAG, get_logger
from services.core.positions import Position
from services.core.settings import Settings

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
PRODUCER_BATCH_BYTES = 256 * 1024
"""Largest record batch the producer builds per partition. aiokafka's default (16 KiB) holds about twenty
`TriggerAccepted` records, so a relay publishing 500 at once handed over some 25 batches, each waiting for
the one before it to drain."""


R = TypeVar("R")
Flow = Callable[[AsyncSession, Sequence[Message], datetime], Awaitable[R]]
"""A service's batch use case: applies records in the caller's transaction and returns what hooks need."""
SkipHook = Callable[[AsyncSession, Message, str, datetime], Awaitable[None]]
"""Runs, in the transaction that moves past it, for a record an operator skipped: (session, record, the
parking error, now)."""


def create_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=PRODUCER_BATCH_BYTES,
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


class _Stopping(Exception):
    """Asked to stop while waiting to retry: nothing more is applied or committed."""


class BatchConsumer(Generic[R]):
    """Consumes `topic` in batches (`getmany`, bounded) for one consumer group; see the module docstring.

    `group` and `topic` are given without the topic prefix; `self.group` and `self.topic` are the Kafka
    names (with it), as stored in `core_consumer_positions` and reported by `/readyz`."""

    def __init__(
        self,
        *,
        settings: Settings,
        uow: UnitOfWork,
        topic: str,
        group: str,
        flow: Flow[R],
        hooks: Sequence[Callable[[R], None]] = (),
        on_skip: SkipHook | None = None,
        after_handle: Callable[[Sequence[Message]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        deliver_unreadable: bool = False,
    ) -> None:
        self.name = group
        self.group = settings.topic(group)
        self.topic = settings.topic(topic)
        self._settings = settings
        self._uow = uow
        self._flow = flow
        self._hooks = tuple(hooks)
        self._on_skip = on_skip
        self._after_handle = after_handle  # test hook: runs between the DB commit and the offset commit
        self._clock = clock
        self._deliver_unreadable = deliver_unreadable  # else an undecodable record is logged and skipped
        self._consumer: AIOKafkaConsumer | None = None
        self._assignment = Assignment(uow=uow, group=self.group, topic=self.topic)

    def is_assigned(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())

    def parked(self) -> list[Position]:
        """The partitions this consumer holds parked (for readiness)."""
        return self._assignment.parked()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=32 * MAX_MESSAGE_BYTES,
            client_id=f"smits-{self.name}",
        )
        consumer.subscribe([self.topic], listener=self._assignment.listener(consumer))
        if not await start_when_reachable(consumer, self.name, stop):
            return
        self._consumer = consumer
        log.info("consumer started", consumer=self.name, topic=self.topic, group=self.group)
        try:
            while not stop.is_set():
                await self._assignment.follow_resumes(consumer)
                batch = await fetch(
                    consumer,
                    max_records=self._settings.consumer_max_records,
                    timeout_ms=self._settings.consumer_fetch_timeout_ms,
                    deliver_unreadable=self._deliver_unreadable,
                    name=self.name,
                )
                if batch:
                    await self._consume(consumer, batch, stop)
                await self._report_lag(consumer)
        finally:
            self._consumer = None
            self._assignment.forget()
            await consumer.stop()
            log.info("consumer stopped", consumer=self.name)

    async def _consume(self, consumer: AIOKafkaConsumer, batch: Sequence[Message], stop: asyncio.Event) -> None:
        """Apply the batch with bounded retries; if it keeps failing, narrow it down and park what fails."""
        started = time.perf_counter()
        attempts = self._settings.consumer_max_attempts

        async def apply(part: Sequence[Message], tries: int) -> BaseException | None:
            if stop.is_set() and part is not batch:  # draining: leave the rest of a narrowing to the next owner
                raise _Stopping
            return await self._attempt(consumer, part, tries, stop)

        try:
            error = await apply(batch, attempts)
            if error is not None:
                log.error(
                    "batch keeps failing; narrowing it down to the failing record",
                    consumer=self.name,
                    size=len(batch),
                    error=describe(error),
                )
                for stuck in await batches.narrow(batch, apply, record_attempts=attempts):
                    await self._park(consumer, stuck, stop)
        except _Stopping:
            return
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _attempt(
        self, consumer: AIOKafkaConsumer, messages: Sequence[Message], attempts: int, stop: asyncio.Event
    ) -> BaseException | None:
        """Apply `messages` in one transaction, then commit offsets; None on success, else the error of the
        last of `attempts` failures. Transient failures (an outage) are retried without counting."""
        failures = retries = 0
        while True:
            try:
                plan, commits = await self._apply(messages)
            except Exception as exc:
                transient = batches.is_transient(exc)
                failures += 0 if transient else 1
                if failures >= attempts:
                    return exc
                retries += 1
                delay = batches.backoff_s(retries, base_s=self._settings.consumer_retry_backoff_s)
                log.warning(
                    "batch failed; retrying",
                    consumer=self.name,
                    attempt=retries + 1,
                    transient=transient,
                    size=len(messages),
                    error=describe(exc),
                    retry_in_s=delay,
                )
                await _sleep_unless_stopped(stop, delay)
                continue
            if self._after_handle is not None:
                self._after_handle(plan.fresh)
            for position in plan.held:
                self._assignment.hold(consumer, position)
            await self._commit(consumer, commits)
            return None

    async def _apply(self, messages: Sequence[Message]) -> tuple[batches.Plan, dict[int, int]]:
        """One transaction: lock the positions, drop what is applied, run the flow, store the positions."""
        now = self._clock()
        where = {"group": self.group, "topic": self.topic}
        async with self._uow.begin() as session:
            stored = await positions.lock(session, **where, partitions={m.partition for m in messages}, now=now)
            plan = batches.plan(messages, stored)
            for message, reason in plan.skipped:
                await self._skip(session, message, reason, now)
            if plan.fresh:
                result = await self._flow(session, plan.fresh, now)
                for hook in self._hooks:
                    after_commit(session, functools.partial(hook, result))
            await positions.advance(session, **where, moves=plan.moves, now=now)
        commits = {p: position.next_offset for p, position in stored.items() if position.next_offset > 0}
        commits.update({position.partition: position.next_offset for position in plan.moves})
        for position in plan.held:
            commits.pop(position.partition, None)
        return plan, commits

    async def _skip(self, session: AsyncSession, message: Message, reason: str, now: datetime) -> None:
        if self._on_skip is not None:
            await self._on_skip(session, message, reason, now)
        fields = {"consumer": self.name, "topic": message.topic, "partition": message.partition}
        after_commit(
            session,
            lambda: log.warning("record skipped by an operator", **fields, offset=message.offset, reason=reason),
        )

    async def _park(self, consumer: AIOKafkaConsumer, stuck: batches.Stuck, stop: asyncio.Event) -> None:
        message = stuck.message
        error = stuck.error  # already operator-safe (batches.describe)
        retries = 0
        while True:
            now = self._clock()
            try:
                async with self._uow.begin() as session:
                    await positions.park(
                        session,
                        group=self.group,
                        topic=self.topic,
                        partition=message.partition,
                        offset=message.offset,
                        error=error,
                        now=now,
                    )
                break
            except Exception as exc:
                if not batches.is_transient(exc):  # still hold the partition, in memory: never crash the worker
                    log.exception("could not store the parked partition; it stays paused in this process only")
                    break
                retries += 1
                await _sleep_unless_stopped(stop, batches.backoff_s(retries, base_s=1.0))
        position = Position(
            group=self.group,
            topic=self.topic,
            partition=message.partition,
            next_offset=message.offset,
            parked_at=now,
            error=error,
        )
        self._assignment.hold(consumer, position)
        log.error(
            "partition parked; resume with `smits consumer resume`",
            group=self.group,
            topic=self.topic,
            partition=message.partition,
            offset=message.offset,
            error=error,
        )

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - await consumer.position(tp))
                CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(lag)

    async def _commit(self, consumer: AIOKafkaConsumer, commits: dict[int, int]) -> None:
        if not commits:
            return
        offsets = {TopicPartition(self.topic, partition): offset for partition, offset in commits.items()}
        try:
            await consumer.commit(offsets)
            BATCHES.labels(self.name).inc()
        except (CommitFailedError, KafkaError) as exc:
            # Partitions were revoked mid-batch: the new owner seeks to the stored positions.
            log.warning("offset commit failed; the stored positions cover it", consumer=self.name, error=str(exc))


async def _sleep_unless_stopped(stop: asyncio.Event, delay: float) -> None:
    """Wait `delay` seconds; raise `_Stopping` if asked to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    if stop.is_set():
        raise _Stopping


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
