"""One set of Alembic migrations serves Postgres and SQLite: up, down, up again, and no model drift."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from services.core.cli import alembic_config
from services.core.db import Base, create_engine
from tests.support import infra

EXPECTED = {
    "console_saved_views",
    "core_api_keys",
    "core_outbox_parked",
    "core_consumer_positions",
    "core_principals",
    "core_org_units",
    "core_memberships",
    "core_sessions",
    "core_pending_logins",
    "core_audit_log",
    "core_audit_head",
    "core_audit_checkpoints",
    "ingest_triggers",
    "ingest_rejections",
    "ingest_duplicates",
    "ingest_outbox",
    "engine_reviews",
    "engine_triggers",
    "engine_timeline",
    "engine_transitions",
    "engine_assessments",
    "engine_approvals",
    "engine_documents",
    "engine_document_versions",
    "engine_acknowledgements",
    "engine_timers",
    "engine_outbox",
    "engine_review_clearances",
    "notifier_subscriptions",
    "notifier_deliveries",
    "notifier_attempts",
    "notifier_notices",
    "notifier_preferences",
    "notifier_digest_items",
}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}
    finally:
        await engine.dispose()


async def _drift(url: str) -> list[object]:
    engine = create_engine(url)

    def compare(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def _round_trip(url: str) -> None:
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _tables(url) == EXPECTED
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _tables(url) == set()
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _tables(url) == EXPECTED
    assert await _drift(url) == []


async def test_postgres_upgrade_downgrade_upgrade_without_drift(pg_server: str) -> None:
    await _round_trip(await infra.create_database(pg_server))


async def test_sqlite_upgrade_downgrade_upgrade_without_drift(tmp_path: Path) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'smits.db'}")


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
async def test_drift_check_notices_a_model_the_migrations_lack(dialect: str, pg_server: str, tmp_path: Path) -> None:
    """Guards the guard: an extra table on the metadata must show up as a difference."""
    from sqlalchemy import Column, Integer, Table

    url = await infra.create_database(pg_server) if dialect == "postgres" else f"sqlite+aiosqlite:///{tmp_path}/d.db"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    extra = Table("zz_unmigrated", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        assert any(diff[0] == "add_table" for diff in await _drift(url))  # type: ignore[index]
    finally:
        Base.metadata.remove(extra)
