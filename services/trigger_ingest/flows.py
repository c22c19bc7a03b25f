"""Ingest use cases: one Kafka batch → trigger, rejection, duplicate and outbox rows in the caller's transaction.

The transaction is opened and committed at the edge (`core.kafka.BatchConsumer`); nothing here commits,
reads a clock or counts a metric: `now` comes from the caller and the returned `IngestedBatch` is counted by
the consumer's after-commit hook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.contracts.accepted import accepted_json
from services.core.kafka import MAX_MESSAGE_BYTES, Message
from services.core.outbox import OutboxRecord, StoredRecord, add_to_outbox
from services.core.tracing import TRACEPARENT, child_of, from_headers, trace_id_of
from services.trigger_ingest import persistence
from services.trigger_ingest.dead_letters import dead_letter
from services.trigger_ingest.domain import Rejection, Trigger, parse_kafka
from services.trigger_ingest.persistence import IngestOutboxRow, NewTrigger


@dataclass
class IngestedBatch:
    accepted: list[Trigger] = field(default_factory=list)
    duplicates: list[Trigger] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    outbox: list[StoredRecord] = field(default_factory=list)
    """What the batch stored in the outbox, for the relay to publish from memory once it has committed."""


async def ingest_batch(session: AsyncSession, batch: Sequence[Message], *, now: datetime) -> IngestedBatch:
    """Store a batch's effects: triggers, repeats of stored ones, dead letters (unique per Kafka position)."""
    candidates: dict[tuple[str, str], tuple[Message, Trigger]] = {}
    repeats: list[tuple[Message, Trigger]] = []
    rejections: list[tuple[Message, Rejection]] = []
    for message in batch:
        parsed = (
            Rejection(kind="UnreadableRecord", message=f"record cannot be decoded: {message.unreadable}")
            if message.unreadable is not None
            else parse_kafka(message.value, message.headers, received_at=now)
        )
        if isinstance(parsed, Rejection):
            rejections.append((message, parsed))
        elif (parsed.source, parsed.id) in candidates:
            repeats.append((message, parsed))
        else:
            candidates[(parsed.source, parsed.id)] = (message, parsed)

    new_keys = await persistence.insert_triggers(
        session, [_new_trigger(message, trigger) for message, trigger in candidates.values()], received_at=now
    )
    outcome = IngestedBatch()
    # A (source, id) stored before is a repeat. Our own batch replayed after a crash never gets here: the
    # consumer's stored position drops it first (core.kafka.BatchConsumer).
    repeats.extend(candidates[key] for key in candidates if key not in new_keys)
    await persistence.insert_duplicates(session, [_duplicate_row(m, t, now) for m, t in repeats])
    outcome.duplicates = [trigger for _, trigger in repeats]

    outbox: list[OutboxRecord] = []
    for key, (message, trigger) in candidates.items():  # input order: per-partition order must hold
        if key not in new_keys:
            continue
        outcome.accepted.append(trigger)
        traceparent = child_of(from_headers(message.headers))
        outbox.append(_accepted_event(trigger, received_at=now, traceparent=traceparent))
    new_rejections = await persistence.insert_rejections(
        session, [_rejection_row(message, rejection, now) for message, rejection in rejections]
    )
    for message, rejection in rejections:
        if (message.partition, message.offset) in new_rejections:
            outcome.rejected.append(rejection)
            outbox.append(_dead_letter(message, rejection))
    outcome.outbox = await add_to_outbox(session, IngestOutboxRow, outbox, now=now)
    return outcome


async def dead_letter_skipped(session: AsyncSession, message: Message, reason: str, now: datetime) -> None:
    """A record an operator skipped (`smits consumer resume --skip-offset`): dead-lettered like a rejected
    one, so it can be inspected and replayed (`smits dlq replay`)."""
    rejection = Rejection(kind="SkippedByOperator", message=f"skipped by an operator after: {reason}")
    await persistence.insert_rejections(session, [_rejection_row(message, rejection, now)])
    await add_to_outbox(session, IngestOutboxRow, [_dead_letter(message, rejection)], now=now)


def _new_trigger(message: Message, trigger: Trigger) -> NewTrigger:
    return NewTrigger(
        source=trigger.source,
        event_id=trigger.id,
        type=trigger.type,
        category=trigger.category.value,
        severity=trigger.severity.value,
        subject=trigger.scope,
        occurred_at=trigger.occurred_at,
        data=trigger.data,
        data_json=trigger.data_json,
        kafka_partition=message.partition,
        kafka_offset=message.offset,
    )


def _duplicate_row(message: Message, trigger: Trigger, now: datetime) -> dict[str, Any]:
    return {
        "source": trigger.source,
        "event_id": trigger.id,
        "kafka_topic": message.topic,
        "kafka_partition": message.partition,
        "kafka_offset": message.offset,
        "received_at": now,
    }


def _rejection_row(message: Message, rejection: Rejection, now: datetime) -> dict[str, Any]:
    return {
        "kafka_topic": message.topic,
        "kafka_partition": message.partition,
        "kafka_offset": message.offset,
        "source": rejection.source,
        "event_id": rejection.id,
        "reason": rejection.kind,
        "message": rejection.message,
        "field": rejection.field,
        "key": message.key,
        "received_at": now,
    }


def _accepted_event(trigger: Trigger, *, received_at: datetime, traceparent: str) -> OutboxRecord:
    value = accepted_json(
        source=trigger.source,
        id=trigger.id,
        type=trigger.type,
        category=trigger.category,
        severity=trigger.severity,
        subject=trigger.scope,
        occurred_at=trigger.occurred_at,
        received_at=received_at,
        data_json=trigger.data_json,
        trace_id=trace_id_of(traceparent),
    )
    headers = [*_ACCEPTED_HEADERS, (TRACEPARENT, traceparent.encode())]
    return OutboxRecord(topic=topics.TRIGGERS_ACCEPTED, key=trigger.scope.encode(), value=value, headers=headers)


_ACCEPTED_HEADERS = (("content-type", b"application/json"), ("smits-schema", b"TriggerAccepted.v1"))


def _dead_letter(message: Message, rejection: Rejection) -> OutboxRecord:
    letter = dead_letter(
        key=message.key,
        value=message.value,
        headers=message.headers,
        rejection=rejection,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        max_bytes=MAX_MESSAGE_BYTES,  # the producer's max_request_size
    )
    return OutboxRecord(topic=topics.TRIGGERS_DLT, key=letter.key, value=letter.value, headers=letter.headers)
