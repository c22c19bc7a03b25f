"""HTTP edge shared by the services: RFC 9457 problem+json errors, request ids and metrics middleware."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.core.errors import DomainError
from services.core.observability import HTTP_LATENCY, HTTP_REQUESTS, get_logger
from services.core.tracing import TRACEPARENT, child_of, trace_id_of

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
CLIENT_CLOSED = 499
"""Status recorded (never sent) when the client went away before its request was read."""
PositiveInt32 = Annotated[int, Field(ge=1, le=2_147_483_647)]
"""An integer from a client that the database stores as a 32-bit integer (a version number, say)."""
MAX_ROW_ID = 2**63 - 1
"""The largest 64-bit (BIGINT) row id."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods that get their own metric label; any other (a client can send any token) counts as `other`."""
T = TypeVar("T")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; one whose UTC equivalent falls outside year 1..9999 is refused."""
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. Z or +01:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc


Instant = Annotated[AwareDatetime, AfterValidator(to_utc)]
"""A point in time from a client (query or body): a time zone is required, the value is normalised to UTC."""


def fits(limit: int) -> AfterValidator:
    """Refuse a value whose text, as it will be stored, is longer than its column (e.g. a URL after
    percent-encoding, which pydantic applies after its own length check)."""

    def check(value: T) -> T:
        if len(str(value)) > limit:
            raise ValueError(f"is longer than {limit} characters once normalised")
        return value

    return AfterValidator(check)


def _without_null(schema: dict[str, Any], model: type[Any]) -> None:
    """`Patch` schemas: drop `null` (and the `null` default) from the fields that may not be null."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name in nullable or not options:
            continue
        kept = [option for option in options if option.get("type") != "null"]
        del prop["anyOf"]
        prop.pop("default", None)
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


ACTOR_FIELDS: dict[str, str] = {
    "actor": "the actor of a write is the signed-in caller",
    "approver": "the approver is the signed-in caller",
    "recipient": "the recipient is the signed-in caller (an admin may name someone in 'on_behalf_of', with a 'reason')",
}
"""Fields request bodies no longer carry, and why: the actor of every write is the authenticated principal."""


def _refuse_actor(value: object, info: ValidationInfo) -> None:
    name = info.field_name or "actor"
    raise ValueError(f"{ACTOR_FIELDS.get(name, ACTOR_FIELDS['actor'])}; remove '{name}'")


ActorField = SkipJsonSchema[Annotated[None, BeforeValidator(_refuse_actor)]]
"""A body field that names an actor: never in the schema, and giving it (any value, null too) is a 422 on that
field saying why. Declare as `actor: ActorField = Field(default=None, exclude=True)`."""


def request_id(request: Request) -> str | None:
    """The id the request middleware gave this request (for the audit record of a write)."""
    value: str | None = getattr(request.state, "request_id", None)
    return value


class Patch(BaseModel):
    """A partial update: an omitted field is left as it is; `null` is accepted only for the fields in
    `nullable` (it clears them), so a column that cannot be null is never set to null.

    The published schema says the same: only `nullable` fields admit null."""

    model_config = ConfigDict(json_schema_extra=_without_null, extra="forbid")  # a typo is an error, not a no-op
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_clearable(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


class ProblemError(Exception):
    """An error the client should see as problem+json. `extra` members are added to the body."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, *, type_: str = "about:blank", **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.extra = extra
        self.headers: dict[str, str] = {}


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            type_=exc.type,
            instance=request.url.path,
            headers=exc.headers or None,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(err.get("loc", ())), "message": err.get("msg", "")} for err in exc.errors()]
        detail = "; ".join(f"{err['field']}: {err['message']}" for err in errors)
        return problem_response(422, "Request validation failed", detail, instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), instance=request.url.path, headers=dict(exc.headers or {}) or None
        )

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        # The one place a flow's domain error becomes HTTP: its kind names the problem type.
        return problem_response(
            exc.status, exc.title, exc.detail, type_=exc.type_uri(), instance=request.url.path, **exc.extra
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client went away, or the request guard already answered and stopped the body (see
        # services/core/limits.py): nothing to send and nothing went wrong here.
        log.info("request body not read: the client went away or the request guard refused it", path=request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "Internal Server Error", instance=request.url.path)


def install_request_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        offered = request.headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.state.request_id = request_id
        incoming = request.headers.get(TRACEPARENT)
        request.state.traceparent = incoming if trace_id_of(incoming) else child_of(None)
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id_of(request.state.traceparent))
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # the route's template, never the raw path
        method = request.method if request.method in HTTP_METHODS else "other"
        status = str(response.status_code) if 100 <= response.status_code <= 599 else "other"
        HTTP_REQUESTS.labels(method, path, status).inc()
        HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - started)
        response.headers["x-request-id"] = request_id
        return response


def encode_cursor(at: datetime, row_id: object) -> str:
    """Opaque keyset cursor over (timestamp, id), newest first."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def row_id(text: str) -> int:
    """A positive 64-bit row id from a cursor (anything larger could not be bound to a BIGINT)."""
    value = int(text)
    if not 1 <= value <= MAX_ROW_ID:
        raise ValueError("row id out of range")
    return value


def decode_cursor(cursor: str, *, parse_id: Callable[[str], T]) -> tuple[datetime, T]:
    """Inverse of `encode_cursor`; a tampered or foreign cursor (undecodable, without a time zone, out of
    range, with an id `parse_id` refuses) is a 400 naming `cursor`, never a 500."""
    try:
        at, _, row = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return to_utc(datetime.fromisoformat(at)), parse_id(row)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(400, "Bad Request", "cursor is not one this API returned", field="cursor") from exc
