"""Issue 12, class 1: a record the Kafka client cannot decode (a header name that is not UTF-8) made every
fetch raise, crashed the worker and stopped the process at every restart; nothing behind it was consumed."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import BatchConsumer, Message
from services.core.settings import Settings
from services.trigger_ingest.persistence import AcceptedTriggerRow, RejectionRow
from tests.support.harness import smits
from tests.support.kafka import read_topic
from tests.support.waiting import eventually

GOAL = {"objective_id": "O", "period": "2027-Q1", "new_target": "t", "owner": "cio"}
STRUCTURED = [("content-type", b"application/cloudevents+json")]
POISON = "QQ"  # replaced by two bytes that are not UTF-8 once the batch is built


def valid(event_id: str) -> bytes:
    event = {"specversion": "1.0", "id": event_id, "source": "/s", "type": "smits.trigger.goal_change.v1", "data": GOAL}
    return orjson.dumps(event)


async def produce_one_batch(settings: Settings, topic: str, records: Sequence[tuple[bytes, bool]]) -> None:
    """One producer batch to partition 0; records flagged True get a header name that is not UTF-8 (what a
    non-Java producer can write and the broker stores as is)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for value, poisoned in records:
            headers = [(POISON, b"x")] if poisoned else STRUCTURED
            batch.append(key=b"k", value=value, timestamp=None, headers=headers)
        buffer = batch._build()
        while (at := buffer.find(POISON.encode())) >= 0:
            buffer[at : at + 2] = b"\xff\xfe"
        struct.pack_into(">I", buffer, 17, calc_crc32c(bytes(buffer[21:])))  # the batch CRC covers the records
        await (await producer.send_batch(batch, settings.topic(topic), partition=0))
    finally:
        await producer.stop()


async def test_an_undecodable_record_is_dead_lettered_and_the_records_around_it_ingested(settings: Settings) -> None:
    async with smits(settings, ["ingest"]) as app:
        await produce_one_batch(settings, topics.TRIGGERS, [(valid("before"), False), (b"{}", True)])
        await produce_one_batch(settings, topics.TRIGGERS, [(b"{}", True)])
        await produce_one_batch(settings, topics.TRIGGERS, [(valid("after"), False)])
        await eventually(
            lambda: app.count(AcceptedTriggerRow), lambda n: n == 2, what="the readable records", within=30
        )
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 2, what="the undecodable ones", within=30)
        async with app.runtime.uow.begin() as session:
            rejections = (await session.scalars(select(RejectionRow).order_by(RejectionRow.kafka_offset))).all()
            accepted = (
                await session.scalars(select(AcceptedTriggerRow.event_id).order_by(AcceptedTriggerRow.kafka_offset))
            ).all()
        letters = await eventually(
            lambda: read_topic(settings, topics.TRIGGERS_DLT), lambda r: len(r) == 2, what="dead letters"
        )
    assert list(accepted) == ["before", "after"]
    assert [(r.kafka_offset, r.reason) for r in rejections] == [(1, "UnreadableRecord"), (2, "UnreadableRecord")]
    assert sorted(dict(r.headers)["__connect.errors.offset"] for r in letters) == [b"1", b"2"]  # key-less
    assert dict(letters[0].headers)["__connect.errors.exception.class.name"] == b"smits.UnreadableRecord"


async def test_a_consumer_that_does_not_take_undecodable_records_skips_them(settings: Settings) -> None:
    seen: list[Message] = []

    async def flow(session: AsyncSession, batch: Sequence[Message], now: datetime) -> None:
        seen.extend(batch)

    engine = create_engine(settings.database_url.get_secret_value())
    consumer: BatchConsumer[None] = BatchConsumer(
        settings=settings, uow=UnitOfWork(engine), topic=topics.TRIGGERS, group="skip-test", flow=flow
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await produce_one_batch(settings, topics.TRIGGERS, [(b"1", False), (b"2", True)])
        await produce_one_batch(settings, topics.TRIGGERS, [(b"3", False)])

        async def values() -> list[bytes | None]:
            return [m.value for m in seen]

        await eventually(values, lambda v: v == [b"1", b"3"], what="the readable records", within=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await engine.dispose()
    assert not task.exception()
