"""Dead letters made to order: one in `triggers-dlt` with its rejection row, as ingest would have left it."""

from __future__ import annotations

from datetime import UTC, datetime

from services.contracts import topics
from services.core.settings import Settings
from services.trigger_ingest.dead_letters import error_headers
from services.trigger_ingest.domain import Rejection
from services.trigger_ingest.persistence import RejectionRow
from tests.support.harness import Harness
from tests.support.kafka import Raw, produce_raw


async def plant_dead_letter(app: Harness, settings: Settings, record: Raw, *, offset: int) -> int:
    """A dead letter of a record that ingest accepts today (as after a fix): in `triggers-dlt` with the error
    headers naming position `offset`, and its rejection row. Returns its id."""
    rejection = Rejection(kind="SkippedByOperator", message="skipped by an operator after: test")
    source = settings.topic(topics.TRIGGERS)
    errors = error_headers(rejection, topic=source, partition=0, offset=offset)
    await produce_raw(settings, topics.TRIGGERS_DLT, [Raw(record.value, [*record.headers, *errors], record.key)])
    async with app.runtime.uow.begin() as session:
        row = RejectionRow(
            kafka_topic=source,
            kafka_partition=0,
            kafka_offset=offset,
            source=None,
            event_id=None,
            reason=rejection.kind,
            message=rejection.message,
            field=None,
            key=record.key,
            received_at=datetime.now(UTC),
        )
        session.add(row)
        await session.flush()
        return row.id
