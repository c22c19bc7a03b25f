"""Dead letters over HTTP, for admins: `GET /v1/dead-letters` (newest first, with the reason) and
`POST /v1/dead-letters/{id}/replay` (that one record back to the input topic, as `smits dlq replay` does)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from services.contracts import topics
from services.core.auth import Admin
from services.core.errors import Conflict
from services.core.http import MAX_ROW_ID, Instant, decode_cursor, encode_cursor, request_id, row_id
from services.core.identity import audit
from services.core.runtime import Runtime
from services.trigger_ingest import persistence
from services.trigger_ingest.persistence import RejectionRow
from services.trigger_ingest.replay import replay_one


class DeadLetterOut(BaseModel):
    """A record ingest refused, dead-lettered to `triggers-dlt`: where it was read, why it was refused."""

    id: int
    received_at: datetime
    reason: str
    detail: str
    field: str | None
    source: str | None
    event_id: str | None
    key: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


class ReplayedOut(BaseModel):
    """Where the replayed record now is in the input topic; `truncated` says what its dead letter had cut."""

    id: int
    topic: str
    partition: int
    offset: int
    truncated: str | None


DeadLetterId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/dead-letters", tags=["triggers"])

    @router.get("", response_model=DeadLetterPage)
    async def list_dead_letters(
        _auth: Admin,
        reason: Annotated[str | None, Query(max_length=100)] = None,
        since: Instant | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DeadLetterPage:
        """Newest first; `reason` (e.g. `UnknownType`) narrows; pass `next_cursor` back as `cursor`."""
        after = decode_cursor(cursor, parse_id=row_id) if cursor else None
        async with runtime.uow.begin() as session:
            rows = await persistence.dead_letters(session, reason=reason, since=since, before=after, limit=limit + 1)
        last = rows[limit - 1] if len(rows) > limit else None
        return DeadLetterPage(
            items=[_out(row) for row in rows[:limit]],
            next_cursor=encode_cursor(last.received_at, last.id) if last else None,
        )

    @router.post("/{dead_letter_id}/replay", status_code=202, response_model=ReplayedOut)
    async def replay(request: Request, dead_letter_id: DeadLetterId, caller: Admin) -> ReplayedOut:
        """Re-publish this dead letter to `triggers` with its original key, value and headers (202 once Kafka
        has it; ingest then reads it like any other record). 409 when `triggers-dlt` does not hold it."""
        async with runtime.uow.begin() as session:
            row = await persistence.dead_letter(session, dead_letter_id)
        replayed = await replay_one(
            runtime.settings,
            runtime.producer,
            topic=row.kafka_topic,
            partition=row.kafka_partition,
            offset=row.kafka_offset,
            recorded_at=row.received_at,
        )
        if replayed is None:
            raise Conflict(
                f"dead letter {dead_letter_id} is not in {runtime.settings.topic(topics.TRIGGERS_DLT)}: it is not "
                "published yet (try again in a moment), or the topic's retention has removed it"
            )
        async with runtime.uow.begin() as session:
            await audit.record_by(
                session,
                caller,
                action="dead_letter.replay",
                target=f"dead_letter:{dead_letter_id}",
                now=datetime.now(UTC),
                request_id=request_id(request),
                detail={
                    "reason": row.reason,
                    "from": f"{row.kafka_topic}/{row.kafka_partition}/{row.kafka_offset}",
                    "to": f"{replayed.topic}/{replayed.partition}/{replayed.offset}",
                },
            )
        return ReplayedOut(
            id=dead_letter_id,
            topic=replayed.topic,
            partition=replayed.partition,
            offset=replayed.offset,
            truncated=replayed.truncated,
        )

    return router


def _out(row: RejectionRow) -> DeadLetterOut:
    return DeadLetterOut(
        id=row.id,
        received_at=row.received_at,
        reason=row.reason,
        detail=row.message,
        field=row.field,
        source=row.source,
        event_id=row.event_id,
        key=row.key.decode("utf-8", "backslashreplace") if row.key is not None else None,
        kafka_topic=row.kafka_topic,
        kafka_partition=row.kafka_partition,
        kafka_offset=row.kafka_offset,
    )
