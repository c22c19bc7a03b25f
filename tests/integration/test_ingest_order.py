"""Accepted triggers leave ingest in the order they arrived (per-partition order is part of the contract)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import select

from services.core.db import UnitOfWork, create_engine
from services.core.kafka import Message
from services.trigger_ingest.flows import ingest_batch
from services.trigger_ingest.persistence import IngestOutboxRow

STRUCTURED = (("content-type", b"application/cloudevents+json"),)
DATA = {"objective_id": "O", "period": "2027-Q1", "new_target": "t", "owner": "cio"}


def message(offset: int, event_id: str) -> Message:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/s",
        "type": "smits.trigger.goal_change.v1",
        "subject": "bu",
        "data": DATA,
    }
    return Message(
        topic="t.triggers",
        partition=0,
        offset=offset,
        key=b"bu",
        value=orjson.dumps(event),
        headers=STRUCTURED,
        timestamp_ms=0,
    )


async def test_outbox_rows_follow_the_input_order(database_url: str) -> None:
    ids = [f"evt-{n:03d}" for n in (7, 3, 9, 1, 5, 0, 8, 2, 6, 4)]  # deliberately not sorted
    batch = [message(offset, event_id) for offset, event_id in enumerate(ids)]
    engine = create_engine(database_url)
    try:
        async with UnitOfWork(engine).begin() as session:
            await ingest_batch(session, batch, now=datetime.now(UTC))
        async with UnitOfWork(engine).begin() as session:
            rows = (await session.scalars(select(IngestOutboxRow).order_by(IngestOutboxRow.id))).all()
    finally:
        await engine.dispose()
    assert [orjson.loads(row.value)["id"] for row in rows] == ids
