"""HTTP front door: `POST /v1/triggers` (structured, binary, batch) and trigger status lookups."""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel

from services.contracts import topics
from services.core.auth import Caller, ReviewsRead, TriggersWrite
from services.core.http import Instant, ProblemError, decode_cursor, encode_cursor, row_id
from services.core.identity.clearance import visible
from services.core.identity.model import Scope
from services.core.limits import CallerTokenBuckets
from services.core.runtime import Runtime
from services.core.tracing import TRACEPARENT, current_traceparent
from services.trigger_ingest import persistence
from services.trigger_ingest.domain import (
    MAX_EVENT_BYTES,
    STRUCTURED_JSON,
    STRUCTURED_PREFIX,
    Rejection,
    Trigger,
    from_event,
    parse_binary,
)
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow, RejectionRow

BATCH_JSON = "application/cloudevents-batch+json"
MAX_BATCH_EVENTS = 1000
MAX_BODY_BYTES = 16 * MAX_EVENT_BYTES
_STATUS = {"InvalidJson": 400, "EventTooLarge": 413, "UnsupportedFormat": 415, "UnsupportedDataContentType": 415}


class EventRef(BaseModel):
    source: str
    id: str


class AcceptedOut(BaseModel):
    accepted: list[EventRef]


class TriggerOut(BaseModel):
    """A trigger's status: `accepted` (with how many repeats were seen) or `rejected` (with the reason)."""

    source: str | None
    id: str | None
    status: Literal["accepted", "rejected", "duplicate"]
    received_at: datetime
    type: str | None = None
    category: str | None = None
    severity: str | None = None
    subject: str | None = None
    occurred_at: datetime | None = None
    duplicates: int = 0
    data: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    field: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None


class TriggerPage(BaseModel):
    items: list[TriggerOut]
    next_cursor: str | None


THREAD_ABOVE_BYTES = 64 * 1024


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/triggers", tags=["triggers"])
    limiter = CallerTokenBuckets(
        rate=runtime.settings.ingest_rate_limit_per_s, burst=runtime.settings.ingest_rate_burst
    )

    def _refuse_if_waiting(wait: float) -> None:
        if wait:
            error = ProblemError(
                429,
                "Too Many Requests",
                f"over {runtime.settings.ingest_rate_limit_per_s:g} trigger events a second for this key; retry later",
            )
            error.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise error

    @router.post("", status_code=202, response_model=AcceptedOut)
    async def post_triggers(
        request: Request, caller: TriggersWrite, content_type: Annotated[str, Header()] = ""
    ) -> AcceptedOut:
        """Validate CloudEvents synchronously, then produce them to `triggers` (acks=all); 202 once durable."""
        bucket = str(caller.key_id or caller.label)  # one rate bucket per key (or per person, service, client)
        _refuse_if_waiting(limiter.wait(bucket))  # before reading: an over-rate caller costs little
        body = await request.body()  # size capped by the BodyLimit middleware (MAX_BODY_BYTES here)
        if len(body) > THREAD_ABOVE_BYTES:  # a large batch is parsed off the event loop the workers share
            events = await asyncio.to_thread(_validate, body, content_type, request)
        else:
            events = _validate(body, content_type, request)
        _refuse_if_waiting(limiter.take(bucket, cost=len(events)))
        topic = runtime.settings.topic(topics.TRIGGERS)
        traceparent = current_traceparent(request.state.traceparent).encode()
        headers = [("content-type", b"application/cloudevents+json"), (TRACEPARENT, traceparent)]
        pending = [
            await runtime.producer.send(topic, value=value, key=key, headers=headers) for value, key, _ in events
        ]
        for future in pending:
            await future
        return AcceptedOut(accepted=[EventRef(source=t.source, id=t.id) for _, _, t in events])

    def hidden(caller: Caller) -> tuple[str, ...]:
        """The trigger categories `caller` may not see (need-to-know): SMITS_INGEST_RESTRICTED_CATEGORIES unless
        it holds a grant in SMITS_INGEST_RESTRICTED_TO (or `*`). Such triggers are absent, as if never sent."""
        settings = runtime.settings
        cleared = visible(caller.grants, restricted=True, clearance=settings.ingest_restricted_to)
        return () if cleared else settings.ingest_restricted_categories

    def rejections_hidden(caller: Caller) -> bool:
        """Refused records have no validated category and their reason can quote their data: with restricted
        categories set, only admins (who see the dead letters anyway) and the cleared see them."""
        return bool(hidden(caller)) and Scope.ADMIN not in caller.scopes

    @router.get("", response_model=TriggerPage)
    async def list_triggers(
        caller: ReviewsRead,
        status: Literal["accepted", "rejected", "duplicate"] = "accepted",
        category: str | None = None,
        source: str | None = None,
        since: Instant | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> TriggerPage:
        """Newest first, one status at a time; pass `next_cursor` back as `cursor` for the next page. With
        restricted categories set, rejected records are listed only to admins and the cleared."""
        after = decode_cursor(cursor, parse_id=row_id) if cursor else None
        if status == "rejected" and rejections_hidden(caller):
            return TriggerPage(items=[], next_cursor=None)
        async with runtime.uow.begin() as session:
            rows = await persistence.list_by_status(
                session,
                status=status,
                category=category,
                source=source,
                since=since,
                before=after,
                limit=limit + 1,
                hidden=hidden(caller),
            )
        items = [_out(row) for row in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return TriggerPage(items=items, next_cursor=encode_cursor(last.received_at, last.id) if last else None)

    @router.get("/by-id", response_model=TriggerOut)
    async def get_trigger_by_id(
        caller: ReviewsRead,
        source: Annotated[str, Query(min_length=1, max_length=1000)],
        id: Annotated[str, Query(min_length=1, max_length=1000)],
    ) -> TriggerOut:
        """The same as `GET /v1/triggers/{source}/{id}`, with source and id in the query: for ids holding a
        slash (ticket numbers like `INC/2026/0042`), which a path cannot carry."""
        return await get_trigger(source, id, caller)

    @router.get("/{source:path}/{event_id}", response_model=TriggerOut)
    async def get_trigger(source: str, event_id: str, caller: ReviewsRead) -> TriggerOut:
        """Status of one trigger by CloudEvents source and id: accepted, or rejected with the reason."""
        async with runtime.uow.begin() as session:
            row = await persistence.find_trigger(session, source, event_id, hidden=hidden(caller))
            repeats = await persistence.count_duplicates(session, source, event_id) if row else 0
            rejection = (
                None
                if row or rejections_hidden(caller)
                else await persistence.latest_rejection(session, source, event_id)
            )
        if row is not None:
            return _out(row).model_copy(update={"duplicates": repeats})
        if rejection is not None:
            return _out(rejection)
        raise ProblemError(404, "Not Found", f"no trigger {event_id!r} from {source!r}")

    return router


def _validate(body: bytes, content_type: str, request: Request) -> list[tuple[bytes, bytes, Trigger]]:
    """Each valid event as (structured JSON value, Kafka key, trigger); any invalid one fails the request."""
    now = datetime.now(UTC)
    media = content_type.split(";")[0].strip().lower()
    if media == BATCH_JSON:
        return [_structured(event, now, index) for index, event in enumerate(_batch(body))]
    if media.startswith(STRUCTURED_PREFIX):
        if media != STRUCTURED_JSON:
            _refuse(Rejection(kind="UnsupportedFormat", message=f"event format {media!r} is not supported; use JSON"))
        return [_structured(_json(body), now, None)]
    attributes = _binary_attributes(request)
    trigger = _refuse(parse_binary(attributes, body, content_type or None, received_at=now))
    event: dict[str, Any] = {**attributes, "data": orjson.loads(body) if body else None}
    return [_structured(event, now, None, trigger)]


def _out(row: AcceptedTriggerRow | RejectionRow | DuplicateRow) -> TriggerOut:
    if isinstance(row, AcceptedTriggerRow):
        return TriggerOut(
            source=row.source,
            id=row.event_id,
            status="accepted",
            received_at=row.received_at,
            type=row.type,
            category=row.category,
            severity=row.severity,
            subject=row.subject,
            occurred_at=row.occurred_at,
            data=row.data,
            kafka_partition=row.kafka_partition,
            kafka_offset=row.kafka_offset,
        )
    if isinstance(row, RejectionRow):
        return TriggerOut(
            source=row.source,
            id=row.event_id,
            status="rejected",
            received_at=row.received_at,
            reason=row.reason,
            detail=row.message,
            field=row.field,
            kafka_partition=row.kafka_partition,
            kafka_offset=row.kafka_offset,
        )
    return TriggerOut(
        source=row.source,
        id=row.event_id,
        status="duplicate",
        received_at=row.received_at,
        kafka_partition=row.kafka_partition,
        kafka_offset=row.kafka_offset,
    )


def _binary_attributes(request: Request) -> dict[str, str]:
    """`ce-*` headers, percent-decoded and read as UTF-8, as the CloudEvents HTTP binding says."""
    attributes: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith("ce-"):
            continue
        try:
            attributes[name[3:]] = urllib.parse.unquote_to_bytes(raw_value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProblemError(
                400,
                "Invalid CloudEvent",
                f"header {name!r} is not UTF-8 after percent-decoding",
                field=name,
                reason="InvalidHeader",
            ) from exc
    return attributes


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _problem(Rejection(kind="InvalidJson", message=f"body is not JSON: {exc}")) from exc


def _batch(body: bytes) -> list[Any]:
    events = _json(body)
    if not isinstance(events, list) or not events:
        raise ProblemError(422, "Unprocessable Content", "a batch must be a non-empty JSON array", field="body")
    if len(events) > MAX_BATCH_EVENTS:
        raise ProblemError(413, "Payload Too Large", f"a batch holds at most {MAX_BATCH_EVENTS} events")
    return events


def _structured(
    event: Any, now: datetime, index: int | None, trigger: Trigger | None = None
) -> tuple[bytes, bytes, Trigger]:
    if trigger is None:
        if not isinstance(event, dict):
            _refuse(Rejection(kind="InvalidEvent", message="a CloudEvent must be a JSON object"), index)
        trigger = _refuse(from_event(event, received_at=now), index)
    value = orjson.dumps(event)
    if len(value) > MAX_EVENT_BYTES:
        _refuse(Rejection(kind="EventTooLarge", message=f"event is over {MAX_EVENT_BYTES} bytes"), index)
    key = event.get("partitionkey") or trigger.scope
    return value, str(key).encode(), trigger


def _refuse(parsed: Trigger | Rejection, index: int | None = None) -> Trigger:
    if isinstance(parsed, Trigger):
        return parsed
    raise _problem(parsed, index)


def _problem(rejection: Rejection, index: int | None = None) -> ProblemError:
    """The 4xx problem+json for a rejection; `field` names it, with the event's index in a batch."""
    where = (rejection.field or "body") if index is None else f"[{index}].{rejection.field or 'event'}"
    return ProblemError(
        _STATUS.get(rejection.kind, 422), "Invalid CloudEvent", rejection.message, field=where, reason=rejection.kind
    )
