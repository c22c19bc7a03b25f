"""Async SQLAlchemy engine, declarative base and the unit of work.

Invariant: one `AsyncSession` per HTTP request or Kafka batch, committed once by `UnitOfWork`;
repositories never commit. Engines are built by the caller, never at import time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import DateTime, MetaData, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from services.core.errors import NotFound

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on Postgres and SQLite alike (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Build the engine (JSON columns through orjson). SQLite gets WAL, a busy timeout and foreign keys, so
    several tasks can share it.

    Bound parameters never appear in errors or echo (`hide_parameters`): a statement may bind a webhook
    secret or a key hash, and an error's text ends up in logs."""
    options: dict[str, Any] = {"json_serializer": _json, "json_deserializer": orjson.loads, "hide_parameters": True}
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            # Take the write lock at BEGIN: a deferred transaction that upgrades to a writer later can
            # fail with "database is locked" without waiting when another task holds the lock.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True, **options)


class UnitOfWork:
    """Opens one session per unit of work and commits it once; rolls back on any exception.

    `after_commit` callbacks run only once the commit succeeded (e.g. waking the outbox relay).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        callbacks: list[Callable[[], None]] = []
        async with self._sessions() as session:
            session.info["after_commit"] = callbacks
            async with session.begin():
                yield session
        for callback in callbacks:
            callback()


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the unit of work that owns `session` has committed."""
    callbacks: list[Callable[[], None]] = session.info.setdefault("after_commit", [])
    if callback not in callbacks:
        callbacks.append(callback)


def table_of(model: type[Base]) -> Table:
    """The Core `Table` of a mapped class (typed, for bulk statements)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def insert_rows(session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of column values (multi-row statements, in list order); nothing when `rows` is empty."""
    if rows:
        await session.execute(table_of(model).insert(), list(rows))


def insert_ignore(session: AsyncSession, table: Table, index_elements: Sequence[str]) -> Insert:
    """`INSERT ... ON CONFLICT (cols) DO NOTHING` for the session's dialect (Postgres or SQLite)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    raise RuntimeError(f"unsupported database dialect {name!r}")


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def one_snapshot(session: AsyncSession) -> None:
    """Every read of this transaction sees one snapshot (call before its first statement). PostgreSQL reads at
    READ COMMITTED, each statement its own snapshot; SQLite's transactions (BEGIN IMMEDIATE) already are one."""
    if is_postgres(session):
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


M = TypeVar("M")


async def get_row(session: AsyncSession, model: type[M], key: object, *, what: str) -> M:
    """The row of `model` with primary key `key`; `NotFound` naming `what` if there is none."""
    row = await session.get(model, key)
    if row is None:
        raise NotFound(f"no {what} {key}")
    return row
