"""The engine-shaped raw limit: what a minimal engine would cost on this stack, measured in the same run.

It consumes the `triggers.accepted` records ingest published with smits' fetch settings and, per
`batch` records consumed (smits' `consumer_max_records`), writes in one transaction what the engine
writes for them: COPY of the reviews opened, the decisions (`engine_triggers`), the timeline entries and the
outbox records, then ONE set-based UPDATE (`UPDATE ... FROM unnest(...)`) of the reviews opened earlier that
the batch attached triggers to. The tables are copies of the engine's own (`LIKE ... INCLUDING ALL`, the same
storage parameters, and foreign keys to the reviews as the engine's have), in the run's database.

The rows are built before the clock starts, from the same workload, as the engine would build them: every
trigger opens a review (the first of its correlation key) or attaches to it, and yields one review event
(`ReviewEventV1`, JSON-encoded for the outbox). It decides, validates, serialises and publishes nothing while
timed, which is the work smits adds; it reads no open review back either (the engine must, to decide).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from bench.infra import asyncpg_dsn
from bench.workload import TEMPLATES, Workload
from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.kafka import MAX_MESSAGE_BYTES
from services.core.outbox import encode_headers

REVIEW_COLUMNS = [
    "id",
    "correlation_key",
    "open_key",
    "policy_id",
    "title",
    "category",
    "severity",
    "scope",
    "state",
    "opened_at",
    "phase_entered_at",
    "due_at",
    "escalate_after_s",
    "escalate_at",
    "first_trigger_at",
    "last_trigger_at",
    "event_sequence",
    "restricted",
    "timers_armed",
]
TRIGGER_COLUMNS = [
    "source",
    "event_id",
    "category",
    "severity",
    "subject",
    "occurred_at",
    "received_at",
    "data",
    "policy_id",
    "correlation_key",
    "outcome",
    "reason",
    "review_id",
    "decided_at",
]
TIMELINE_COLUMNS = ["id", "review_id", "sequence", "type", "occurred_at", "data"]
OUTBOX_COLUMNS = ["topic", "key", "value", "headers", "created_at"]
TABLES = ("reviews", "triggers", "timeline", "outbox")  # creation order (the reviews are referenced)
UPDATE = (
    "UPDATE raw_engine_reviews AS r SET last_trigger_at = u.last_trigger_at, event_sequence = u.event_sequence "
    "FROM unnest($1::uuid[], $2::timestamptz[], $3::int[]) AS u(id, last_trigger_at, event_sequence) "
    "WHERE r.id = u.id"
)
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass(kw_only=True)
class _Review:
    id: uuid.UUID
    key: str
    policy_id: str
    title: str
    category: str
    severity: str
    scope: str
    opened_at: datetime
    first_trigger_at: datetime
    last_trigger_at: datetime
    opened_in: int
    sequence: int = 0

    def row(self) -> tuple[Any, ...]:
        due = self.opened_at + timedelta(days=14)
        return (
            self.id,
            self.key,
            self.key,
            self.policy_id,
            self.title,
            self.category,
            self.severity,
            self.scope,
            "triage",
            self.opened_at,
            self.opened_at,
            due,
            172_800.0,
            due + timedelta(days=2),
            self.first_trigger_at,
            self.last_trigger_at,
            self.sequence,
            False,
            False,
        )


@dataclass(kw_only=True)
class Batch:
    """One transaction's rows: COPY of each table, then the UPDATE of reviews opened in earlier batches."""

    size: int
    reviews: list[tuple[Any, ...]] = field(default_factory=list)
    triggers: list[tuple[Any, ...]] = field(default_factory=list)
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    updated: tuple[list[uuid.UUID], list[datetime], list[int]] = field(default_factory=lambda: ([], [], []))


def _correlation(event: dict[str, Any]) -> tuple[str, str]:
    """(category, correlation key) as the default policies correlate the workload's triggers."""
    category: str = event["type"].split(".")[2]
    where, _ = TEMPLATES[f"{category}.json"]
    value = event["subject"] if where == "subject" else event["data"][where.removeprefix("data.")]
    return category, f"{category}:{value}"


def build_batches(workload: Workload, *, batch: int, now: datetime | None = None) -> list[Batch]:
    """The engine's rows for the workload's unique triggers, in batches of `batch`."""
    now = now or datetime.now(UTC)
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    for record in workload.records:
        if record.trigger_id is not None and record.trigger_id not in seen:
            seen.add(record.trigger_id)
            events.append(orjson.loads(record.value))
    headers = encode_headers(
        [("content-type", b"application/json"), ("smits-schema", b"ReviewEvent.v1"), ("traceparent", TRACEPARENT)]
    )
    reviews: dict[str, _Review] = {}
    batches: list[Batch] = []
    for number, start in enumerate(range(0, len(events), batch)):
        chunk = Batch(size=len(events[start : start + batch]))
        touched: dict[str, _Review] = {}
        for event in events[start : start + batch]:
            category, key = _correlation(event)
            severity = str(event.get("severity", "medium"))
            occurred = datetime.fromisoformat(event["time"])
            ref = {
                "trigger": {
                    "source": event["source"],
                    "id": event["id"],
                    "category": category,
                    "severity": severity,
                    "subject": event["subject"],
                }
            }
            review = reviews.get(key)
            if review is None:
                title = f"{category.replace('_', ' ')}: {event['data'].get('title') or event['subject']}"[:600]
                review = reviews[key] = _Review(
                    id=uuid.uuid4(),
                    key=key,
                    policy_id=category.replace("_", "-"),
                    title=title,
                    category=category,
                    severity=severity,
                    scope=event["subject"],
                    opened_at=now,
                    first_trigger_at=occurred,
                    last_trigger_at=occurred,
                    opened_in=number,
                )
                type_ = ReviewEventType.OPENED
                summary = {"title": title, "category": category, "severity": severity, "state": "triage"}
                data = {"review_id": str(review.id), **summary, "owner": None, "correlation_key": key, **ref}
                outcome, reason = "opened", "first trigger for its key: a review is opened"
            else:
                review.last_trigger_at = max(review.last_trigger_at, occurred)
                type_ = ReviewEventType.TRIGGER_ATTACHED
                data = {"review_id": str(review.id), **ref}
                outcome, reason = "attached", "an open review collects this key"
            review.sequence += 1
            touched[key] = review
            chunk.triggers.append(
                (
                    event["source"],
                    event["id"],
                    category,
                    severity,
                    event["subject"],
                    occurred,
                    now,
                    orjson.dumps(event["data"]).decode(),
                    review.policy_id,
                    key,
                    outcome,
                    reason,
                    review.id,
                    now,
                )
            )
            review_event = ReviewEventV1(
                id=uuid.uuid4(),
                type=type_,
                review_id=review.id,
                sequence=review.sequence,
                occurred_at=now,
                data=data,
                category=category,
                severity=severity,
                scope=review.scope,
            )
            chunk.timeline.append(
                (review_event.id, review.id, review.sequence, type_.value, now, orjson.dumps(data).decode())
            )
            value = orjson.dumps(review_event.model_dump(mode="json"))
            chunk.outbox.append(("reviews.events", str(review.id).encode(), value, headers, now))
        for review in touched.values():
            if review.opened_in == number:
                chunk.reviews.append(review.row())
            else:
                chunk.updated[0].append(review.id)
                chunk.updated[1].append(review.last_trigger_at)
                chunk.updated[2].append(review.sequence)
        batches.append(chunk)
    return batches


@dataclass(frozen=True, kw_only=True)
class EngineLimit:
    rate: float
    """Triggers per second, consume and write in series."""
    write_rate: float
    """Triggers per second of the writes alone (the transactions' time)."""
    triggers: int
    reviews: int
    updates: int


async def _create_tables(connection: asyncpg.Connection) -> None:
    for name in TABLES:
        source = f"engine_{name}"
        references = name in {"triggers", "timeline"}  # as the engine's tables refer to its reviews
        reference = ", FOREIGN KEY (review_id) REFERENCES raw_engine_reviews (id)" if references else ""
        await connection.execute(f"DROP TABLE IF EXISTS raw_engine_{name} CASCADE")
        await connection.execute(f"CREATE TABLE raw_engine_{name} (LIKE {source} INCLUDING ALL{reference})")
        options = await connection.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", source)
        if options:  # e.g. a fillfactor the engine's migration set
            await connection.execute(f"ALTER TABLE raw_engine_{name} SET ({', '.join(options)})")


async def measure(kafka: str, topic: str, database_url: str, workload: Workload, *, batch: int) -> EngineLimit:
    """Consume `topic` (every unique trigger of `workload`, as ingest published it) and write the engine's rows
    per `batch` consumed, one transaction each; see the module docstring."""
    batches = build_batches(workload, batch=batch)
    total = sum(chunk.size for chunk in batches)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=32 * MAX_MESSAGE_BYTES,
    )
    try:
        await _create_tables(connection)
        await consumer.start()
        seen = written = 0
        writing = 0.0
        idle_since = time.monotonic()
        started = time.perf_counter()
        for chunk in batches:
            while seen < written + chunk.size:  # this batch's records consumed (the rest is the next batch's)
                fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
                got = sum(len(records) for records in fetched.values())
                seen += got
                if got:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 60:
                    raise RuntimeError(f"engine raw limit: {seen:,} of {total:,} records on {topic} after 60 s idle")
            began = time.perf_counter()
            async with connection.transaction():
                if chunk.reviews:
                    await connection.copy_records_to_table(
                        "raw_engine_reviews", records=chunk.reviews, columns=REVIEW_COLUMNS
                    )
                await connection.copy_records_to_table(
                    "raw_engine_triggers", records=chunk.triggers, columns=TRIGGER_COLUMNS
                )
                await connection.copy_records_to_table(
                    "raw_engine_timeline", records=chunk.timeline, columns=TIMELINE_COLUMNS
                )
                await connection.copy_records_to_table(
                    "raw_engine_outbox", records=chunk.outbox, columns=OUTBOX_COLUMNS
                )
                if chunk.updated[0]:
                    await connection.execute(UPDATE, *chunk.updated)
            writing += time.perf_counter() - began
            written += chunk.size
        elapsed = time.perf_counter() - started
        if seen != total:
            raise RuntimeError(f"engine raw limit: {seen:,} records on {topic}, expected {total:,}")
        stored = await connection.fetchval("SELECT count(*) FROM raw_engine_triggers")
        if stored != total:
            raise RuntimeError(f"engine raw limit: {stored:,} rows stored for {total:,} triggers")
        return EngineLimit(
            rate=total / elapsed,
            write_rate=total / writing,
            triggers=total,
            reviews=sum(len(chunk.reviews) for chunk in batches),
            updates=sum(len(chunk.updated[0]) for chunk in batches),
        )
    finally:
        await consumer.stop()
        for name in reversed(TABLES):
            await connection.execute(f"DROP TABLE IF EXISTS raw_engine_{name}")
        await connection.close()
