"""API keys with scopes. Keys are shown once; only their SHA-256 is stored and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import JSON, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.db import Base, UnitOfWork, UTCDateTime
from services.core.http import ProblemError

KEY_PREFIX = "smits_"


class Scope(StrEnum):
    TRIGGERS_WRITE = "triggers:write"
    REVIEWS_READ = "reviews:read"
    REVIEWS_WRITE = "reviews:write"
    SUBSCRIPTIONS_ADMIN = "subscriptions:admin"
    ADMIN = "admin"


class ApiKeyRow(Base):
    __tablename__ = "core_api_keys"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(session: AsyncSession, *, name: str, scopes: Sequence[Scope]) -> str:
    """Store a new key's hash and return the key itself (the only time it exists in clear)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKeyRow(hash=hash_key(key), name=name, scopes=sorted(set(scopes)), created_at=datetime.now(UTC)))
    return key


def _unauthorized(detail: str) -> ProblemError:
    error = ProblemError(401, "Unauthorized", detail)
    error.headers["WWW-Authenticate"] = 'Bearer realm="smits"'
    return error


async def _authorize(request: Request, uow: UnitOfWork, scope: Scope) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer API key")
    digest = hash_key(token.strip())
    async with uow.begin() as session:
        row = await session.get(ApiKeyRow, digest)
    if row is None or not hmac.compare_digest(row.hash, digest):
        raise _unauthorized("unknown API key")
    request.state.caller = f"key:{row.name}:{digest[:12]}"
    if scope.value not in row.scopes and Scope.ADMIN.value not in row.scopes:
        raise ProblemError(403, "Forbidden", f"this key lacks the '{scope.value}' scope", required_scope=scope.value)


def requires(scope: Scope) -> object:
    """Route dependency: the caller's key must carry `scope` (or `admin`). Skipped when auth is disabled."""

    async def guard(request: Request) -> None:
        runtime = request.app.state.runtime
        if runtime.settings.auth_disabled:
            request.state.caller = f"ip:{request.client.host if request.client else 'unknown'}"
            return
        await _authorize(request, runtime.uow, scope)

    return Depends(guard)


ReviewsRead = Annotated[None, requires(Scope.REVIEWS_READ)]
ReviewsWrite = Annotated[None, requires(Scope.REVIEWS_WRITE)]
TriggersWrite = Annotated[None, requires(Scope.TRIGGERS_WRITE)]
SubscriptionsAdmin = Annotated[None, requires(Scope.SUBSCRIPTIONS_ADMIN)]
