"""Issue 12, property (b): whatever records arrive (sizes, header names and values, data keys, invalid UTF-8,
huge values), each is accepted or dead-lettered, and a valid record after them is always accepted; on
PostgreSQL through the real batch flow, and through the relay to real Kafka for the producer's size limit."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.contracts import topics
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import MAX_MESSAGE_BYTES, Message, create_producer
from services.core.outbox import OutboxRelay, decode_headers
from services.core.parking import ParkedOutboxRow
from services.core.settings import Settings
from services.trigger_ingest.flows import ingest_batch
from services.trigger_ingest.persistence import IngestOutboxRow
from tests.support.kafka import read_topic
from tests.support.strategies import VALID_DATA, kafka_records

MiB = 1024 * 1024
STRUCTURED = ("content-type", b"application/cloudevents+json")
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

huge_bytes = st.integers(MiB - 64, MAX_MESSAGE_BYTES + 64).map(lambda n: b"x" * n)
long_text = st.integers(200, 70_000).map(lambda n: "é" * n)
hostile_text = st.text(max_size=40) | st.text(alphabet=st.sampled_from("a\x00é\n\"'\\"), max_size=2_000) | long_text
header_names = hostile_text | st.sampled_from(["content-type", "ce_specversion", "ce_id", "ce_source", "ce_type"])
header_values = (
    st.binary(max_size=40)
    | st.sampled_from([b"\xff\xfe", b"\xc3", b"1.0", b"application/json"])
    | st.integers(0, 600_000).map(lambda n: b"\xff" * n)
)
headers = st.lists(st.tuples(header_names, header_values), max_size=5)


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A structured event whose attributes and data keys are hostile text."""
    data: dict[str, Any] = dict(VALID_DATA)
    data.update(draw(st.dictionaries(hostile_text, st.integers() | hostile_text, max_size=3)))
    attributes = {
        "specversion": draw(st.just("1.0") | hostile_text),
        "id": draw(st.just("x") | hostile_text),
        "source": draw(st.just("/s") | hostile_text),
        "type": draw(st.just("smits.trigger.regulation_update.v1") | hostile_text),
    }
    if draw(st.booleans()):
        attributes["subject"] = draw(hostile_text)
    return json.dumps({**attributes, "data": data}).encode()


records: st.SearchStrategy[Record] = st.one_of(
    kafka_records().map(lambda r: (None, r[0], r[1])),
    st.tuples(st.none() | st.binary(max_size=30), hostile_events(), headers.map(lambda h: [STRUCTURED, *h])),
    st.tuples(st.none() | huge_bytes, st.none() | st.binary(max_size=50) | huge_bytes, headers),
)
offsets = itertools.count()


def valid_record(event_id: str) -> bytes:
    event_ = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/valid",
        "type": "smits.trigger.regulation_update.v1",
        "data": VALID_DATA,
    }
    return orjson.dumps(event_)


def messages(batch: list[Record], valid_id: str) -> list[Message]:
    out = [
        Message(
            topic="t.triggers",
            partition=0,
            offset=next(offsets),
            key=key,
            value=value,
            headers=tuple(headers_),
            timestamp_ms=0,
        )
        for key, value, headers_ in batch
    ]
    valid = (None, valid_record(valid_id), [STRUCTURED])
    return [
        *out,
        Message(
            topic="t.triggers",
            partition=0,
            offset=next(offsets),
            key=valid[0],
            value=valid[1],
            headers=tuple(valid[2]),
            timestamp_ms=0,
        ),
    ]


class Rollback(Exception):
    """Ends each example's transaction so examples do not see each other."""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(records, min_size=1, max_size=5))
async def test_each_record_is_accepted_or_dead_lettered_and_a_valid_one_after_them_is_accepted(
    engine: AsyncEngine, batch: list[Record]
) -> None:
    valid_id = f"valid-{next(offsets)}"
    batch_messages = messages(batch, valid_id)
    with contextlib.suppress(Rollback):
        async with UnitOfWork(engine).begin() as session:
            outcome = await ingest_batch(session, batch_messages, now=datetime.now(UTC))
            await session.flush()  # every database refusal (length, NUL, encoding) surfaces here
            sizes = [
                DefaultRecordBatchBuilder.estimate_size_in_bytes(row.key, row.value, decode_headers(row.headers))
                for row in (await session.scalars(select(IngestOutboxRow))).all()
            ]
            raise Rollback
    assert len(outcome.accepted) + len(outcome.duplicates) + len(outcome.rejected) == len(batch_messages)
    assert valid_id in [trigger.id for trigger in outcome.accepted]
    assert all(size <= MAX_MESSAGE_BYTES for size in sizes)  # every record the relay will send fits
    event(f"{len(outcome.rejected)} dead-lettered")
    event("a value over 1 MiB" if any(len(value or b"") > MiB for _, value, _ in batch) else "values under 1 MiB")
    event("a dead letter had to be cut" if max(sizes, default=0) > MAX_MESSAGE_BYTES - 4096 else "no cut")


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = create_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.tuples(st.none() | huge_bytes, huge_bytes, headers) | records, min_size=1, max_size=2))
async def test_dead_letters_of_huge_records_reach_kafka_and_the_valid_record_behind_them_too(
    settings: Settings, engine: AsyncEngine, producer: AIOKafkaProducer, batch: list[Record]
) -> None:
    uow = UnitOfWork(engine)
    valid_id = f"valid-{next(offsets)}"
    async with uow.begin() as session:
        outcome = await ingest_batch(session, messages(batch, valid_id), now=datetime.now(UTC))
    relay = OutboxRelay(uow=uow, row=IngestOutboxRow, producer=producer, settings=settings)
    for _ in range(20):  # bounded
        if await asyncio.wait_for(relay.publish_once(), 60) == 0:
            break
    async with uow.begin() as session:
        assert (await session.scalars(select(ParkedOutboxRow))).all() == []  # nothing had to be parked
    accepted = [orjson.loads(r.value)["id"] for r in await read_topic(settings, topics.TRIGGERS_ACCEPTED)]
    assert valid_id in accepted
    letters = await read_topic(settings, topics.TRIGGERS_DLT)
    assert sum(1 for r in letters if dict(r.headers).get("__connect.errors.offset")) >= len(outcome.rejected)
