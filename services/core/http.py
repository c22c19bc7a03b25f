"""HTTP edge shared by the services: RFC 9457 problem+json errors, request ids and metrics middleware."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.observability import HTTP_LATENCY, HTTP_REQUESTS, get_logger
from services.core.tracing import TRACEPARENT, child_of, trace_id_of

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
PositiveInt32 = Annotated[int, Field(ge=1, le=2_147_483_647)]
"""An integer from a client that the database stores as a 32-bit integer (a version number, say)."""
T = TypeVar("T")


M = TypeVar("M")


async def get_or_404(session: AsyncSession, model: type[M], key: object, *, what: str) -> M:
    """The row with primary key `key`, or a 404 problem naming `what` was not found."""
    row = await session.get(model, key)
    if row is None:
        raise ProblemError(404, "Not Found", f"no {what} {key}")
    return row


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

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "Internal Server Error", instance=request.url.path)


def install_request_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        incoming = request.headers.get(TRACEPARENT)
        request.state.traceparent = incoming if trace_id_of(incoming) else child_of(None)
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id_of(request.state.traceparent))
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, path).observe(time.perf_counter() - started)
        response.headers["x-request-id"] = request_id
        return response


def encode_cursor(at: datetime, row_id: object) -> str:
    """Opaque keyset cursor over (timestamp, id), newest first."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str, *, parse_id: Callable[[str], T]) -> tuple[datetime, T]:
    """Inverse of `encode_cursor`; a tampered or foreign cursor is a 400, never a 500."""
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), parse_id(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(400, "Bad Request", "cursor is not one this API returned", field="cursor") from exc
