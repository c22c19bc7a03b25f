"""Alembic environment for SQLite and Postgres alike (async engines, batch mode on SQLite)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import services.console.persistence
import services.core.auth
import services.core.identity.audit
import services.core.positions
import services.notifier.persistence
import services.strategy_engine.persistence
import services.trigger_ingest.persistence  # noqa: F401  (registers every table on Base.metadata)
from services.core.db import Base, create_engine
from services.core.settings import Settings

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.attributes.get("database_url")
    return str(url) if url else Settings().database_url.get_secret_value()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # a caller (tests) lends its own sync connection
        _configure(connection)
    else:
        asyncio.run(_run_online())


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `smits migrate`")
run()
