"""Issue 12, class 1: a record whose rejection cannot be stored as is must not stop the batch (both databases).

PostgreSQL enforces column lengths and refuses NUL; SQLite does neither. Before the fix, an overlong field
path or reason made the whole batch fail for ever on PostgreSQL, so nothing behind it was ingested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.bounds import TRUNCATED
from services.core.cli import alembic_config
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import MAX_MESSAGE_BYTES, Message
from services.core.outbox import decode_headers
from services.trigger_ingest.dead_letters import TRUNCATION_HEADER
from services.trigger_ingest.flows import ingest_batch
from services.trigger_ingest.persistence import AcceptedTriggerRow, IngestOutboxRow, RejectionRow
from tests.support import infra

STRUCTURED = ("content-type", b"application/cloudevents+json")
GOAL = {"objective_id": "O", "period": "2027-Q1", "new_target": "t", "owner": "cio"}


@pytest.fixture(params=["postgres", "sqlite"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server: str, pg_template: str
) -> AsyncIterator[AsyncEngine]:
    url = await migrated_database(request.param, tmp_path, pg_server, pg_template)
    engine = create_engine(url)
    yield engine
    await engine.dispose()
    if request.param == "postgres":
        await infra.drop_database(url)


async def migrated_database(dialect: str, tmp_path: Path, pg_server: str, pg_template: str) -> str:
    """A fresh database at head: a clone of the Postgres template, or a migrated SQLite file."""
    if dialect == "postgres":
        return await infra.create_database(pg_server, template=pg_template)
    url = f"sqlite+aiosqlite:///{tmp_path / 'smits.db'}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    return url


def event(event_id: str, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/s",
        "type": "smits.trigger.goal_change.v1",
        "subject": "bu",
        "data": GOAL,
    }
    return {**base, **changes}


def record(offset: int, value: bytes, headers: tuple[tuple[str, bytes], ...] = (STRUCTURED,)) -> Message:
    return Message(
        topic="t.triggers", partition=0, offset=offset, key=b"bu", value=value, headers=headers, timestamp_ms=0
    )


async def ingest_then_valid(engine: AsyncEngine, hostile: Message) -> tuple[list[RejectionRow], list[str]]:
    """Ingest `hostile` and a valid record behind it in one committed batch; the stored rejections and
    the ids of the accepted triggers."""
    valid = record(hostile.offset + 1, orjson.dumps(event("valid-after")))
    async with UnitOfWork(engine).begin() as session:
        await ingest_batch(session, [hostile, valid], now=datetime.now(UTC))
    async with UnitOfWork(engine).begin() as session:
        rejections = list((await session.scalars(select(RejectionRow))).all())
        accepted = list((await session.scalars(select(AcceptedTriggerRow.event_id))).all())
    return rejections, accepted


async def test_an_overlong_field_path_is_stored_bounded(engine: AsyncEngine) -> None:
    hostile = record(0, orjson.dumps(event("e1", data={**GOAL, "k" * 5000: 1})))
    rejections, accepted = await ingest_then_valid(engine, hostile)
    assert accepted == ["valid-after"]
    [rejection] = rejections
    assert rejection.field is not None
    assert len(rejection.field) <= 300
    assert rejection.field.endswith(TRUNCATED)
    assert len(rejection.message) <= 2000


async def test_an_overlong_reason_is_stored_bounded(engine: AsyncEngine) -> None:
    hostile = record(0, orjson.dumps(event("e1", specversion="9" * 50_000)))
    rejections, accepted = await ingest_then_valid(engine, hostile)
    assert accepted == ["valid-after"]
    [rejection] = rejections
    assert rejection.field == "specversion"
    assert len(rejection.message) <= 2000
    assert TRUNCATED in rejection.message


async def test_an_overlong_header_name_is_stored_bounded(engine: AsyncEngine) -> None:
    name = "ce_" + "h" * 100_000
    hostile = record(0, b"{}", headers=(("content-type", b"application/json"), (name, b"\xff")))
    rejections, accepted = await ingest_then_valid(engine, hostile)
    assert accepted == ["valid-after"]
    [rejection] = rejections
    assert rejection.field is not None
    assert len(rejection.field) <= 300
    assert len(rejection.message) < 300


async def test_a_nul_in_a_data_key_is_stored_escaped(engine: AsyncEngine) -> None:
    hostile = record(0, orjson.dumps(event("e1", data={**GOAL, "a\x00b": 1})))
    rejections, accepted = await ingest_then_valid(engine, hostile)
    assert accepted == ["valid-after"]
    [rejection] = rejections
    assert rejection.field is not None
    assert "\\x00" in rejection.field


async def test_the_dead_letter_of_a_record_near_the_size_limit_fits_the_producer(engine: AsyncEngine) -> None:
    headers = (STRUCTURED, *((f"x-{n}", b"h" * 100_000) for n in range(8)))
    hostile = record(0, b"v" * (MAX_MESSAGE_BYTES - 500_000), headers=headers)  # over 1 MiB: rejected
    rejections, accepted = await ingest_then_valid(engine, hostile)
    assert accepted == ["valid-after"]
    assert len(rejections) == 1
    async with UnitOfWork(engine).begin() as session:
        letters = [
            row for row in (await session.scalars(select(IngestOutboxRow))).all() if row.topic != "triggers.accepted"
        ]
    [letter] = letters
    headers_out = decode_headers(letter.headers)
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(letter.key, letter.value, headers_out)
    assert size <= MAX_MESSAGE_BYTES
    assert b"header(s) dropped" in dict(headers_out)[TRUNCATION_HEADER]
    assert letter.value == hostile.value  # the value fits; headers that did not are dropped and named
