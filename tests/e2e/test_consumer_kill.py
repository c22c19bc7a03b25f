"""Each service's process dies between a batch's database commit and its Kafka offset commit; restarted, it
resumes from the stored position (Kafka's lags behind), so no record reaches the flow twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.contracts import topics
from services.core import positions
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import open_reader
from services.core.settings import Settings
from services.notifier.persistence import DeliveryRow
from services.strategy_engine.persistence import DecidedTriggerRow
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow
from tests.support.events import accepted, feed_engine, publish, review_event
from tests.support.harness import regulation_event
from tests.support.kafka import Raw, produce_raw
from tests.support.processes import SMITS, service_env
from tests.support.subscriptions import subscribe_directly
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
N = 600
T0 = datetime(2026, 9, 1, tzinfo=UTC)


async def _feed_ingest(settings: Settings, uow: UnitOfWork) -> None:
    def value(event_id: str) -> bytes:
        event = regulation_event(event_id=event_id)
        return orjson.dumps({**event.get_attributes(), "time": "2026-11-20T09:00:00Z", "data": event.get_data()})

    structured = [("content-type", b"application/cloudevents+json")]
    await produce_raw(
        settings, topics.TRIGGERS, [Raw(value(f"e-{n}"), structured, f"k{n % 7}".encode()) for n in range(N)]
    )


async def _feed_engine(settings: Settings, uow: UnitOfWork) -> None:
    await feed_engine(
        settings,
        [accepted("goal_change", f"g-{n}", at=T0, subject=f"bu-{n % 17}", objective_id=f"O{n}") for n in range(N)],
    )


async def _feed_notifier(settings: Settings, uow: UnitOfWork) -> None:
    await subscribe_directly(uow, "http://127.0.0.1:9/")
    reviews = [uuid.uuid4() for _ in range(N // 5)]
    await publish(settings, [review_event(review, n) for n in range(1, 6) for review in reviews])


CASES: dict[str, tuple[str, Callable[[Settings, UnitOfWork], Awaitable[None]], list[tuple[Any, int]]]] = {
    # Ingest keeps no own-replay check any more: a record replayed past the stored position would be
    # recorded as a duplicate of itself.
    "ingest": (topics.TRIGGERS, _feed_ingest, [(AcceptedTriggerRow, N), (DuplicateRow, 0)]),
    "engine": (topics.TRIGGERS_ACCEPTED, _feed_engine, [(DecidedTriggerRow, N)]),
    "notifier": (topics.REVIEWS_EVENTS, _feed_notifier, [(DeliveryRow, N)]),
}


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(command, env=env, cwd=ROOT, stderr=sink)


async def _committed(settings: Settings, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    client = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await client.start()
    try:
        return {p: await client.committed(TopicPartition(topic, p)) or 0 for p in partitions}
    finally:
        await client.stop()


async def _ends(settings: Settings, topic: str) -> dict[int, int]:
    reader = await open_reader(settings, topic)
    try:
        ends = await reader.end_offsets(list(reader.assignment()))
        return {tp.partition: offset for tp, offset in ends.items() if offset > 0}
    finally:
        await reader.stop()


@pytest.mark.parametrize("service", sorted(CASES))
async def test_killed_between_the_db_and_the_offset_commit_a_restart_applies_nothing_twice(
    settings: Settings, service: str, tmp_path: Path
) -> None:
    short_topic, feed, effects = CASES[service]
    topic, group = settings.topic(short_topic), settings.topic(service)
    db = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(db)

    async def count(model: Any) -> int:
        async with uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    try:
        await feed(settings, uow)
        ends = await _ends(settings, topic)
        env = service_env(settings, SMITS_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8", SMITS_CONSUMER_MAX_RECORDS="100")
        doomed = _spawn(
            [sys.executable, "-m", "tests.support.faulty", "serve", service, "--port", "0"],
            {**env, "SMITS_TEST_DIE_BEFORE_OFFSET_COMMIT": "1"},
            tmp_path / "doomed.log",
        )
        assert doomed.wait(timeout=90) == 137  # died right after its first batch's database commit
        model, expected = effects[0]
        applied_before = await count(model)
        assert 0 < applied_before < expected
        assert await _committed(settings, group, topic, list(ends)) == dict.fromkeys(ends, 0)

        restarted = _spawn([SMITS, "serve", service, "--port", "0"], env, tmp_path / "restarted.log")
        try:
            await eventually(lambda: count(model), lambda n: n == expected, within=90, what=f"{service} caught up")
            await eventually(
                lambda: _committed(settings, group, topic, list(ends)), lambda c: c == ends, what="offsets committed"
            )
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=30)
        for model, expected in effects:
            assert await count(model) == expected, model
        async with uow.begin() as session:
            stored = await positions.stored(session, group=group, topic=topic, partitions=list(ends))
    finally:
        await db.dispose()
    assert restarted.returncode == 0
    assert {p: position.next_offset for p, position in stored.items()} == ends
    log = (tmp_path / "restarted.log").read_text()
    assert '"event": "seeking to the stored position"' in log  # the stored position won over Kafka's
