"""Arbitrary records through the batch flow on real Postgres: no unhandled error, every record accounted for."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.db import UnitOfWork, create_engine
from services.core.kafka import Message
from services.trigger_ingest.flows import ingest_batch
from tests.support.strategies import kafka_records


class Rollback(Exception):
    """Ends each example's transaction so examples do not see each other."""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


records = st.lists(kafka_records(), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=records, repeat=st.booleans())
async def test_every_record_is_accepted_duplicate_or_dead_lettered(
    engine: AsyncEngine, batch: list[tuple[bytes | None, list[tuple[str, bytes]]]], repeat: bool
) -> None:
    messages = [
        Message(
            topic="t.triggers", partition=0, offset=n, key=None, value=value, headers=tuple(headers), timestamp_ms=0
        )
        for n, (value, headers) in enumerate(batch + (batch if repeat else []))
    ]
    uow = UnitOfWork(engine)
    with contextlib.suppress(Rollback):
        async with uow.begin() as session:
            outcome = await ingest_batch(session, messages, now=datetime.now(UTC))
            await session.flush()  # any database refusal (length, NUL, type) surfaces here, not later
            raise Rollback
    assert len(outcome.accepted) + len(outcome.duplicates) + len(outcome.rejected) == len(messages)
    event("some accepted" if outcome.accepted else "none accepted")
    event("some duplicates" if outcome.duplicates else "no duplicates")
