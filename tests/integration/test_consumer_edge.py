"""The batch edge on the real broker and Postgres: stored positions win over Kafka's after a crash between
the two commits (each service), and an operator's skip of a parked ingest record dead-letters it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic import command
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.contracts import topics
from services.core import positions
from services.core.cli import alembic_config
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import BatchConsumer, Message, open_reader
from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime, running
from services.core.settings import Settings
from services.notifier.persistence import DeliveryRow
from services.notifier.transport.consumer import review_events_consumer
from services.strategy_engine.persistence import DecidedTriggerRow, EngineOutboxRow
from services.strategy_engine.policies import load
from services.strategy_engine.transport.consumer import accepted_consumer
from services.trigger_ingest import flows as ingest_flows
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow, IngestOutboxRow, RejectionRow
from services.trigger_ingest.transport import consumer as ingest_consumer
from services.trigger_ingest.transport.consumer import trigger_consumer
from tests.support.events import accepted, feed_engine, publish, review_event, tuned
from tests.support.harness import Harness, regulation_event, smits
from tests.support.kafka import Raw, produce_raw, read_topic
from tests.support.processes import SMITS, service_env
from tests.support.subscriptions import subscribe_directly
from tests.support.waiting import eventually

N = 240
T0 = datetime(2026, 9, 1, tzinfo=UTC)
STRUCTURED = (("content-type", b"application/cloudevents+json"),)


class Crash(Exception):
    """Stands for the process dying after the DB commit and before the offset commit."""


Build = Callable[[Runtime, Callable[[Sequence[Message]], None]], BatchConsumer[Any]]


def _ingest(runtime: Runtime, hook: Callable[[Sequence[Message]], None]) -> BatchConsumer[Any]:
    relay = OutboxRelay(uow=runtime.uow, row=IngestOutboxRow, producer=runtime.producer, settings=runtime.settings)
    return trigger_consumer(settings=runtime.settings, uow=runtime.uow, relay=relay, after_handle=hook)


def _engine(runtime: Runtime, hook: Callable[[Sequence[Message]], None]) -> BatchConsumer[Any]:
    relay = OutboxRelay(uow=runtime.uow, row=EngineOutboxRow, producer=runtime.producer, settings=runtime.settings)
    return accepted_consumer(
        settings=runtime.settings, uow=runtime.uow, relay=relay, policies=load(), after_handle=hook
    )


def _notifier(runtime: Runtime, hook: Callable[[Sequence[Message]], None]) -> BatchConsumer[Any]:
    return review_events_consumer(settings=runtime.settings, uow=runtime.uow, after_handle=hook)


async def _feed_ingest(settings: Settings, runtime: Runtime) -> None:
    records = [Raw(_trigger(f"evt-{n}"), STRUCTURED, f"k{n % 11}".encode()) for n in range(N)]
    await produce_raw(settings, topics.TRIGGERS, records)


async def _feed_engine(settings: Settings, runtime: Runtime) -> None:
    docs = [
        accepted("goal_change", f"g-{n}", at=T0, subject=f"bu-{n % 13}", objective_id=f"O{n}", period="2027-Q1")
        for n in range(N)
    ]
    await feed_engine(settings, docs)


async def _feed_notifier(settings: Settings, runtime: Runtime) -> None:
    await subscribe_directly(runtime.uow, "http://127.0.0.1:9/")
    reviews = [uuid.uuid4() for _ in range(N // 4)]
    await publish(settings, [review_event(review, n) for n in range(1, 5) for review in reviews])


EFFECTS: dict[str, tuple[str, Build, Callable[[Settings, Runtime], Awaitable[None]], list[tuple[Any, int]]]] = {
    "ingest": (
        topics.TRIGGERS,
        _ingest,
        _feed_ingest,
        [(AcceptedTriggerRow, N), (IngestOutboxRow, N), (DuplicateRow, 0)],
    ),
    "engine": (topics.TRIGGERS_ACCEPTED, _engine, _feed_engine, [(DecidedTriggerRow, N)]),
    "notifier": (topics.REVIEWS_EVENTS, _notifier, _feed_notifier, [(DeliveryRow, N)]),
}


def _trigger(event_id: str) -> bytes:
    event = regulation_event(event_id=event_id)
    return orjson.dumps({**event.get_attributes(), "time": "2026-11-20T09:00:00Z", "data": event.get_data()})


def _lag(settings: Settings, service: str, topic: str, ends: dict[int, int]) -> Callable[[], Awaitable[float]]:
    """Records the consumer has not fetched yet, summed over the partitions (from its lag gauge)."""

    async def probe() -> float:
        labels = {"consumergroup": settings.topic(service), "topic": settings.topic(topic)}
        values = [REGISTRY.get_sample_value("kafka_consumergroup_lag", {**labels, "partition": str(p)}) for p in ends]
        return float("inf") if None in values else sum(v or 0.0 for v in values)

    return probe


async def _committed(settings: Settings, service: str, topic: str, ends: dict[int, int]) -> dict[int, int]:
    client = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.topic(service))
    await client.start()
    try:
        return {p: await client.committed(TopicPartition(settings.topic(topic), p)) or 0 for p in ends}
    finally:
        await client.stop()


async def _ends(settings: Settings, topic: str) -> dict[int, int]:
    reader = await open_reader(settings, settings.topic(topic))
    try:
        ends = await reader.end_offsets(list(reader.assignment()))
        return {tp.partition: offset for tp, offset in ends.items() if offset > 0}
    finally:
        await reader.stop()


@pytest.mark.parametrize("service", sorted(EFFECTS))
async def test_after_a_crash_between_the_db_and_the_offset_commit_the_stored_position_wins(
    settings: Settings, service: str
) -> None:
    topic, build, feed, effects = EFFECTS[service]
    handed: list[tuple[int, int]] = []  # every record the flow was given, across the crash

    def crash_after_first_batch(batch: Sequence[Message]) -> None:
        handed.extend((m.partition, m.offset) for m in batch)
        raise Crash(f"after committing {len(batch)} records")

    def record(batch: Sequence[Message]) -> None:
        handed.extend((m.partition, m.offset) for m in batch)

    async with running(settings, {}) as (runtime, _):
        harness = Harness(runtime, None, None)  # type: ignore[arg-type]
        await feed(settings, runtime)
        ends = await _ends(settings, topic)
        with pytest.raises(Crash):
            await build(runtime, crash_after_first_batch).run(asyncio.Event())
        assert len(handed) > 0

        stop = asyncio.Event()
        restarted = asyncio.create_task(build(runtime, record).run(stop))
        await eventually(_lag(settings, service, topic, ends), lambda lag: lag == 0, what="the restart caught up")
        stop.set()
        await restarted
        committed = await _committed(settings, service, topic, ends)
        for model, expected in effects:
            assert await harness.count(model) == expected, model
        async with runtime.uow.begin() as session:
            stored = await positions.stored(
                session, group=settings.topic(service), topic=settings.topic(topic), partitions=list(ends)
            )
    repeats = [position for position, times in Counter(handed).items() if times > 1]
    assert repeats == [], "the flow was handed records it had already applied"
    assert sorted(handed) == sorted((p, o) for p, end in ends.items() for o in range(end))
    assert {p: position.next_offset for p, position in stored.items()} == ends
    assert committed == ends  # Kafka's committed offsets follow the stored ones


async def test_an_operator_skip_of_a_parked_ingest_record_dead_letters_it_and_the_rest_flows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tuned(settings, consumer_max_attempts=2, consumer_retry_backoff_s=0.05)
    real = ingest_flows.ingest_batch

    async def poisoned(session: Any, batch: Sequence[Message], *, now: datetime) -> ingest_flows.IngestedBatch:
        if any(b"evt-poison" in (m.value or b"") for m in batch):
            raise RuntimeError("the flow fails on evt-poison")
        return await real(session, batch, now=now)

    monkeypatch.setattr(ingest_consumer, "ingest_batch", poisoned)
    ids = ["evt-a", "evt-b", "evt-poison", "evt-c", "evt-d"]
    async with smits(settings, ["ingest"]) as app:
        await produce_raw(settings, topics.TRIGGERS, [Raw(_trigger(i), STRUCTURED, b"one-key") for i in ids])
        parked = await eventually(_parked(app), lambda p: len(p) == 1, what="the partition parked")
        assert await app.count(AcceptedTriggerRow) == 2  # the records before the failing one are applied
        ready = await app.api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["parked_partitions"][0]["offset"] == parked[0].next_offset
        assert "RuntimeError: the flow fails on evt-poison" in ready.json()["parked_partitions"][0]["error"]

        where = ["--group", parked[0].group, "--topic", parked[0].topic, "--partition", str(parked[0].partition)]
        result = await asyncio.to_thread(
            subprocess.run,
            [SMITS, "consumer", "resume", *where, "--skip-offset"],
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        await eventually(
            lambda: app.count(AcceptedTriggerRow), lambda n: n == 4, what="the records after the skipped one"
        )
        assert (await app.api.get("/readyz")).status_code == 200
        async with app.runtime.uow.begin() as session:
            rejections = (await session.scalars(select(RejectionRow))).all()
        dead = await eventually(
            lambda: read_topic(settings, topics.TRIGGERS_DLT), lambda r: len(r) == 1, what="the dead letter"
        )
        accepted_ids = [orjson.loads(r.value)["id"] for r in await read_topic(settings, topics.TRIGGERS_ACCEPTED)]
    assert [(r.reason, r.kafka_offset) for r in rejections] == [("SkippedByOperator", parked[0].next_offset)]
    assert b"evt-poison" in dead[0].value
    headers = dict(dead[0].headers)
    assert headers["__connect.errors.exception.class.name"] == b"smits.SkippedByOperator"
    assert b"the flow fails on evt-poison" in headers["__connect.errors.exception.message"]
    assert sorted(accepted_ids) == ["evt-a", "evt-b", "evt-c", "evt-d"]


def _parked(app: Harness) -> Callable[[], Awaitable[list[positions.Position]]]:
    async def probe() -> list[positions.Position]:
        async with app.runtime.uow.begin() as session:
            return await positions.parked(session)

    return probe


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
async def test_positions_park_resume_and_skip_on_both_databases(
    dialect: str, database_url: str, tmp_path: Path
) -> None:
    url = database_url
    if dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'smits.db'}"
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    engine = create_engine(url)
    uow, now, where = UnitOfWork(engine), datetime.now(UTC), {"group": "t.g", "topic": "t.topic"}
    try:
        async with uow.begin() as session:
            fresh = await positions.lock(session, **where, partitions={0, 1}, now=now)
            assert [(p.partition, p.next_offset, p.parked) for p in fresh.values()] == [(0, 0, False), (1, 0, False)]
            await positions.advance(session, **where, moves=[replace(fresh[0], next_offset=7)], now=now)
        async with uow.begin() as session:
            await positions.park(session, **where, partition=1, offset=3, error="ValueError: bad", now=now)
        async with uow.begin() as session:
            assert [(p.partition, p.next_offset, p.error) for p in await positions.parked(session)] == [
                (1, 3, "ValueError: bad")
            ]
            assert await positions.resume(session, **where, partition=0, skip=True, now=now) is None  # not parked
            resumed = await positions.resume(session, **where, partition=1, skip=True, now=now)
            assert resumed is not None
            assert resumed.next_offset == 3
        async with uow.begin() as session:
            after = await positions.lock(session, **where, partitions={0, 1}, now=now)
            assert await positions.parked(session) == []
        assert (after[0].next_offset, after[0].skip_offset) == (7, None)
        assert (after[1].next_offset, after[1].skip_offset, after[1].error) == (3, 3, "ValueError: bad")
    finally:
        await engine.dispose()
