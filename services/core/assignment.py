"""The partitions a `BatchConsumer` holds: where each starts (stored position vs Kafka's committed offset)
and which are parked (paused at their failing record, reported, resumed when an operator releases them).

`smits consumer resume` runs in another process, so releases are read from `core_consumer_positions`
by polling, and only while something is parked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from services.core import positions
from services.core.db import UnitOfWork
from services.core.observability import PARKED_PARTITIONS, get_logger
from services.core.positions import Position

log = get_logger(__name__)

RESUME_POLL_S = 1.0


class Assignment:
    """The parked partitions of one consumer (group and topic are the Kafka names) and its rebalances."""

    def __init__(self, *, uow: UnitOfWork, group: str, topic: str) -> None:
        self._uow = uow
        self.group = group
        self.topic = topic
        self._parked: dict[int, Position] = {}
        self._checked_at = 0.0

    def parked(self) -> list[Position]:
        return [self._parked[partition] for partition in sorted(self._parked)]

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        return _Rebalance(self, consumer)

    def hold(self, consumer: AIOKafkaConsumer, position: Position) -> None:
        """Pause a parked partition at its record (fetching stops; the other partitions keep flowing)."""
        tp = TopicPartition(self.topic, position.partition)
        if tp not in consumer.assignment():
            return  # revoked meanwhile: its next owner reads the parked row on assignment
        consumer.seek(tp, position.next_offset)
        consumer.pause(tp)
        self._parked[position.partition] = position
        PARKED_PARTITIONS.labels(self.group, self.topic, str(position.partition)).set(1)

    def forget(self, partitions: Sequence[int] | None = None) -> None:
        """Stop reporting these partitions (all when None): revoked, released, or the consumer stopped."""
        for partition in list(self._parked) if partitions is None else partitions:
            if self._parked.pop(partition, None) is not None:
                PARKED_PARTITIONS.labels(self.group, self.topic, str(partition)).set(0)

    async def follow_resumes(self, consumer: AIOKafkaConsumer) -> None:
        """Resume the parked partitions an operator released, from their stored position."""
        if not self._parked or time.monotonic() - self._checked_at < RESUME_POLL_S:
            return
        self._checked_at = time.monotonic()
        try:
            async with self._uow.begin() as session:
                still = {p.partition for p in await positions.parked(session, group=self.group, topic=self.topic)}
                released = [partition for partition in self._parked if partition not in still]
                found = await positions.stored(session, group=self.group, topic=self.topic, partitions=released)
        except Exception as exc:
            log.warning("could not read parked partitions; will retry", group=self.group, error=str(exc))
            return
        for partition in released:
            self.forget([partition])
            tp = TopicPartition(self.topic, partition)
            if tp in consumer.assignment() and partition in found:
                consumer.seek(tp, found[partition].next_offset)
                consumer.resume(tp)
            log.info("partition resumed", group=self.group, topic=self.topic, partition=partition)

    async def assigned(self, consumer: AIOKafkaConsumer, assigned: Sequence[TopicPartition]) -> None:
        """Seek to the stored position where it is ahead of Kafka's committed offset (a crash between the
        two commits) and commit it there too; pause the parked ones."""
        async with self._uow.begin() as session:
            found = await positions.stored(
                session, group=self.group, topic=self.topic, partitions=[tp.partition for tp in assigned]
            )
        behind: dict[TopicPartition, int] = {}
        for tp in assigned:
            position = found.get(tp.partition)
            if position is None:
                continue
            if position.parked:
                self.hold(consumer, position)
                continue
            committed = await consumer.committed(tp)
            if position.next_offset > (committed or 0):
                consumer.seek(tp, position.next_offset)
                behind[tp] = position.next_offset
                log.info(
                    "seeking to the stored position",
                    group=self.group,
                    partition=tp.partition,
                    stored=position.next_offset,
                    committed=committed,
                )
        if behind:  # so Kafka's view (lag exporters, the next assignment) agrees with the stored one
            try:
                await consumer.commit(behind)
            except (CommitFailedError, KafkaError) as exc:
                log.warning("could not commit the stored positions", group=self.group, error=str(exc))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Assignment, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._owner.forget([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        try:
            await self._owner.assigned(self._consumer, list(assigned))
        except Exception as exc:  # the transaction's own position check still drops what is applied
            log.warning("could not read stored positions on assignment", group=self._owner.group, error=str(exc))
