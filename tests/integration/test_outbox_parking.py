"""Issue 12, class 1: an outbox record Kafka refuses for good is parked, and the records behind it go out.

Before the fix the relay retried such a record for ever and every later outbox record waited behind it.
Real Kafka, both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from typer.testing import CliRunner

from services.contracts import topics
from services.core import parking
from services.core.cli import app as cli
from services.core.db import UnitOfWork, create_engine, insert_rows
from services.core.kafka import MAX_MESSAGE_BYTES, create_producer
from services.core.observability import configure_logging
from services.core.outbox import OutboxRelay, outbox_values
from services.core.parking import ParkedOutboxRow
from services.core.runtime import Runtime, ServiceUnit, build_app
from services.core.settings import Settings
from services.trigger_ingest.flows import ingest_batch
from services.trigger_ingest.persistence import IngestOutboxRow
from tests.integration.test_ingest_bounds import STRUCTURED, event, migrated_database, record
from tests.support.events import tuned
from tests.support.kafka import read_topic


@pytest.fixture(params=["postgres", "sqlite"])
async def db_settings(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server: str, pg_template: str, settings: Settings
) -> Settings:
    return tuned(settings, database_url=await migrated_database(request.param, tmp_path, pg_server, pg_template))


@pytest.fixture
async def uow(db_settings: Settings) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(db_settings.database_url.get_secret_value())
    yield UnitOfWork(engine)
    await engine.dispose()


@pytest.fixture
async def producer(db_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = create_producer(db_settings)
    await producer.start()
    yield producer
    await producer.stop()


def row(n: int, size: int = 10) -> dict[str, object]:
    return outbox_values(
        topic=topics.TRIGGERS_ACCEPTED, key=b"k", value=str(n).encode().ljust(size, b"."), now=datetime.now(UTC)
    )


async def publish_all(relay: OutboxRelay) -> None:
    for _ in range(10):  # bounded: each call takes one batch
        if await relay.publish_once() == 0:
            return


async def parked_rows(uow: UnitOfWork) -> list[ParkedOutboxRow]:
    async with uow.begin() as session:
        return list((await session.scalars(select(ParkedOutboxRow).order_by(ParkedOutboxRow.id))).all())


async def test_a_record_over_the_request_size_is_parked_and_later_ones_published(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    async with uow.begin() as session:
        await insert_rows(session, IngestOutboxRow, [row(1), row(2, size=MAX_MESSAGE_BYTES + 1), row(3), row(4)])
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await asyncio.wait_for(publish_all(relay), 60)

    published = await read_topic(db_settings, topics.TRIGGERS_ACCEPTED)
    assert [r.value.rstrip(b".") for r in published] == [b"1", b"3", b"4"]  # per-key order of the rest kept
    [parked] = await parked_rows(uow)
    assert parked.outbox == "ingest_outbox"
    assert parked.outbox_id == 2
    assert len(parked.value) == MAX_MESSAGE_BYTES + 1
    assert parked.error.startswith("MessageSizeTooLargeError")
    assert await relay.backlog() == 0
    assert REGISTRY.get_sample_value("smits_outbox_parked_records", {"outbox": "ingest_outbox"}) == 1


async def test_a_dead_letter_of_a_huge_record_is_published_and_so_is_the_valid_record_behind_it(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    headers = (STRUCTURED, *((f"x-{n}", b"h" * 100_000) for n in range(8)))
    hostile = record(0, b"v" * (MAX_MESSAGE_BYTES - 500_000), headers=headers)
    valid = record(1, orjson.dumps(event("valid-after")))
    async with uow.begin() as session:
        await ingest_batch(session, [hostile, valid], now=datetime.now(UTC))
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await asyncio.wait_for(publish_all(relay), 60)

    [letter] = await read_topic(db_settings, topics.TRIGGERS_DLT)
    assert letter.value == hostile.value
    assert b"header(s) dropped" in dict(letter.headers)["smits-dlt-truncated"]
    [accepted] = await read_topic(db_settings, topics.TRIGGERS_ACCEPTED)
    assert orjson.loads(accepted.value)["id"] == "valid-after"
    assert await parked_rows(uow) == []


def invoke(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"SMITS_DATABASE_URL": settings.database_url.get_secret_value(), "SMITS_LOG_LEVEL": "error"}
    result = CliRunner().invoke(cli, list(args), env=env)
    configure_logging(settings)  # the CLI pointed logging at the runner's stream, closed by now
    return result.exit_code, result.output


async def park_one(uow: UnitOfWork, *, outbox_id: int) -> int:
    async with uow.begin() as session:
        await insert_rows(session, IngestOutboxRow, [row(outbox_id)])
        [stored] = (await session.scalars(select(IngestOutboxRow))).all()
        await parking.park(session, "ingest_outbox", [(stored, ValueError("refused"))])
        await session.delete(stored)
    return (await parked_rows(uow))[0].id


async def test_cli_lists_and_retries_a_parked_record_back_in_outbox_order(
    db_settings: Settings, uow: UnitOfWork
) -> None:
    async with uow.begin() as session:
        await insert_rows(session, IngestOutboxRow, [row(1), row(2)])
        first = await session.scalar(select(func.min(IngestOutboxRow.id)))
        [stored] = (await session.scalars(select(IngestOutboxRow).where(IngestOutboxRow.id == first))).all()
        await parking.park(session, "ingest_outbox", [(stored, ValueError("refused"))])
        await session.delete(stored)
    [parked] = await parked_rows(uow)

    code, output = await asyncio.to_thread(invoke, db_settings, "outbox", "parked")
    assert code == 0
    assert f"{parked.id}\tingest_outbox#{first}" in output
    assert "ValueError: refused" in output

    code, output = await asyncio.to_thread(invoke, db_settings, "outbox", "retry", str(parked.id))
    assert code == 0, output
    assert await parked_rows(uow) == []
    async with uow.begin() as session:
        values = (await session.scalars(select(IngestOutboxRow.value).order_by(IngestOutboxRow.id))).all()
    assert [v.rstrip(b".") for v in values] == [b"1", b"2"]  # back in its place, before the later row

    code, output = await asyncio.to_thread(invoke, db_settings, "outbox", "retry", str(parked.id))
    assert code == 1


async def test_cli_drops_a_parked_record(db_settings: Settings, uow: UnitOfWork) -> None:
    parked_id = await park_one(uow, outbox_id=1)
    code, output = await asyncio.to_thread(invoke, db_settings, "outbox", "drop", str(parked_id))
    assert code == 0, output
    assert await parked_rows(uow) == []
    async with uow.begin() as session:
        assert await session.scalar(select(func.count()).select_from(IngestOutboxRow)) == 0
    code, _ = await asyncio.to_thread(invoke, db_settings, "outbox", "drop", str(parked_id))
    assert code == 1


async def test_readyz_is_503_naming_a_parked_record_until_it_is_dropped(db_settings: Settings, uow: UnitOfWork) -> None:
    runtime = Runtime(settings=db_settings, engine=uow.engine, uow=uow, producer=create_producer(db_settings))
    units = [ServiceUnit(name="ingest", outboxes=["ingest_outbox"])]
    transport = httpx.ASGITransport(app=build_app(runtime, units))
    async with httpx.AsyncClient(transport=transport, base_url="http://smits") as client:
        assert (await client.get("/readyz")).status_code == 200
        parked_id = await park_one(uow, outbox_id=7)
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/problem+json")
        body = answer.json()
        assert body["checks"]["outbox_parked"] is False
        assert body["parked_records"][0]["id"] == parked_id
        assert body["parked_records"][0]["error"] == "ValueError: refused"
        assert "refused" in body["detail"]
        async with uow.begin() as session:
            await parking.drop(session, parked_id)
        assert (await client.get("/readyz")).status_code == 200
        other = build_app(runtime, [ServiceUnit(name="notifier")])
        await park_one(uow, outbox_id=8)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://n") as notifier:
            assert (await notifier.get("/readyz")).status_code == 200  # not its outbox


async def test_a_record_the_broker_refuses_is_parked_and_the_producer_keeps_publishing(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    """The broker's own limit (a topic with a smaller max.message.bytes) is a permanent refusal too."""
    admin = AIOKafkaAdminClient(bootstrap_servers=db_settings.kafka_bootstrap)
    await admin.start()
    try:
        small = NewTopic(db_settings.topic("small"), 1, 1, topic_configs={"max.message.bytes": "2000"})
        await admin.create_topics([small])
    finally:
        await admin.close()
    refused = outbox_values(topic="small", key=b"k", value=b"x" * 10_000, now=datetime.now(UTC))
    async with uow.begin() as session:
        await insert_rows(
            session,
            IngestOutboxRow,
            [row(1), refused, row(3), outbox_values(topic="small", key=b"k", value=b"ok", now=datetime.now(UTC))],
        )
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await asyncio.wait_for(publish_all(relay), 60)
    [parked] = await parked_rows(uow)
    assert parked.topic == "small"
    assert "MessageSizeTooLarge" in parked.error
    # rows of the refused attempt may go out twice (consumers dedup); order after dedup holds
    accepted = [r.value.rstrip(b".") for r in await read_topic(db_settings, topics.TRIGGERS_ACCEPTED)]
    assert list(dict.fromkeys(accepted)) == [b"1", b"3"]
    assert {r.value for r in await read_topic(db_settings, "small")} == {b"ok"}
    async with uow.begin() as session:  # the idempotent producer is still usable after the refusal
        await insert_rows(session, IngestOutboxRow, [row(5)])
    await asyncio.wait_for(publish_all(relay), 60)
    accepted = [r.value.rstrip(b".") for r in await read_topic(db_settings, topics.TRIGGERS_ACCEPTED)]
    assert list(dict.fromkeys(accepted)) == [b"1", b"3", b"5"]


async def test_an_invalid_record_is_parked_and_the_next_one_published(
    db_settings: Settings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> None:
    """A key-less record on a compacted topic: the broker answers INVALID_RECORD (aiokafka: UnknownError)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=db_settings.kafka_bootstrap)
    await admin.start()
    try:
        compacted = NewTopic(db_settings.topic("compacted"), 1, 1, topic_configs={"cleanup.policy": "compact"})
        await admin.create_topics([compacted])
    finally:
        await admin.close()
    async with uow.begin() as session:
        await insert_rows(
            session,
            IngestOutboxRow,
            [
                outbox_values(topic="compacted", key=None, value=b"no key", now=datetime.now(UTC)),
                outbox_values(topic="compacted", key=b"k", value=b"keyed", now=datetime.now(UTC)),
            ],
        )
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=db_settings)
    await asyncio.wait_for(publish_all(relay), 60)
    [parked] = await parked_rows(uow)
    assert parked.value == b"no key"
    assert parked.error.startswith("UnknownError")
    assert {r.value for r in await read_topic(db_settings, "compacted")} == {b"keyed"}
