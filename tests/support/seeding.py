"""Reviews, their triggers, assessments and documents written straight to the engine's tables, for tests of
its reads (the board, "my work", KPIs) that need exact times, ties and restricted reviews."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cli import alembic_config
from services.core.settings import Settings
from services.strategy_engine.persistence import (
    AcknowledgementRow,
    AssessmentRow,
    DecidedTriggerRow,
    DocumentRow,
    DocumentVersionRow,
    ReviewClearanceRow,
    ReviewRow,
)
from tests.support.events import tuned
from tests.support.harness import Harness, smits

DATABASES = ["postgres", "sqlite"]


@asynccontextmanager
async def engine_on(database: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Harness]:
    """The engine in-process on the test's PostgreSQL database, or on a fresh SQLite file."""
    if database == "sqlite":
        from alembic import command

        url = f"sqlite+aiosqlite:///{tmp_path / 'smits.db'}"
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        settings = tuned(settings, database_url=url)
    async with smits(settings, ["engine"]) as harness:
        yield harness


async def review(
    session: AsyncSession,
    *,
    opened_at: datetime,
    title: str = "a review",
    category: str = "regulation_update",
    severity: str = "high",
    scope: str | None = None,
    state: str = "triage",
    owner: str | None = None,
    due_at: datetime | None = None,
    clearance: Sequence[str] | None = None,
    triggers: Sequence[dict[str, Any]] = (),
) -> ReviewRow:
    """A review (restricted to `clearance` when given), with one stored trigger per `triggers` item (its data)."""
    row = ReviewRow(
        id=uuid.uuid4(),
        correlation_key=f"test:{uuid.uuid4()}",
        open_key=None,
        policy_id="test",
        title=title,
        category=category,
        severity=severity,
        scope=scope,
        state=state,
        owner=owner,
        opened_at=opened_at,
        phase_entered_at=opened_at,
        due_at=due_at,
        first_trigger_at=opened_at,
        last_trigger_at=opened_at,
        restricted=clearance is not None,
    )
    session.add(row)
    await session.flush()
    session.add_all(ReviewClearanceRow(review_id=row.id, grant=grant) for grant in clearance or ())
    for n, data in enumerate(triggers):
        session.add(
            DecidedTriggerRow(
                source="/tests",
                event_id=f"{row.id}-{n}",
                category=category,
                severity=severity,
                subject=scope or "bu-1",
                occurred_at=opened_at,
                received_at=opened_at,
                data=data,
                policy_id="test",
                correlation_key=row.correlation_key,
                outcome="opened" if n == 0 else "attached",
                reason="test",
                review_id=row.id,
                decided_at=opened_at,
            )
        )
    await session.flush()
    return row


async def assessment(
    session: AsyncSession, review: ReviewRow, *, version: int, approvers: Sequence[str], at: datetime
) -> AssessmentRow:
    """Assessment `version` of `review`, naming `approvers` (quorum of one)."""
    body: dict[str, Any] = {"approvers": {"mode": "quorum", "names": list(approvers), "required": 1}}
    row = AssessmentRow(
        id=uuid.uuid4(),
        review_id=review.id,
        version=version,
        body=body,
        complete=False,
        risk_score=None,
        created_at=at,
        created_by="tests",
    )
    session.add(row)
    await session.flush()
    return row


async def published(
    session: AsyncSession,
    review: ReviewRow,
    *,
    kind: str,
    recipients: Sequence[str],
    at: datetime,
    due_in: timedelta,
    org_unit: str = "",
    version: int = 1,
    status: str = "published",
) -> DocumentVersionRow:
    """Version `version` of the (kind, org unit) document from `review`, published at `at` to `recipients`."""
    document = DocumentRow(id=uuid.uuid4(), kind=kind, org_unit=org_unit, title=f"{kind} {org_unit}".strip())
    session.add(document)
    await session.flush()
    row = DocumentVersionRow(
        id=uuid.uuid4(),
        document_id=document.id,
        review_id=review.id,
        version=version,
        status=status,
        summary="",
        created_at=at,
        published_at=at,
        certified_by="tests",
        distribution=[{"name": r, "org_unit": None, "required": True} for r in recipients],
    )
    document.current_version = version
    session.add(row)
    await session.flush()
    session.add_all(AcknowledgementRow(version_id=row.id, recipient=r, due_at=at + due_in) for r in recipients)
    await session.flush()
    return row
