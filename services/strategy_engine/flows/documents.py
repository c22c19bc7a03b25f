"""Document versions: draft → in review → approved → published; publishing supersedes the previous
published version (no rollback) and resolves its distribution list into acknowledgements with due dates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType
from services.core.db import get_row
from services.core.identity.model import Caller
from services.strategy_engine import rights
from services.strategy_engine.documents import PER_ORG_UNIT, Kind, Recipient, Status, may_move
from services.strategy_engine.errors import GuardRefused, Invalid, NotFound
from services.strategy_engine.flows.access import require_edit
from services.strategy_engine.flows.events import lock_review, record_event
from services.strategy_engine.lifecycle import TERMINAL, ReviewState
from services.strategy_engine.persistence import AcknowledgementRow, DocumentRow, DocumentVersionRow

ORG_WIDE = ""


async def add_version(
    session: AsyncSession,
    *,
    review_id: uuid.UUID,
    kind: Kind,
    org_unit: str | None,
    title: str,
    summary: str,
    distribution: Sequence[Recipient],
    ack_due_days: float,
    caller: Caller,
    now: datetime,
) -> DocumentVersionRow:
    """A new draft version of the (kind, org unit) document, produced by this review; recipients are people,
    named by e-mail."""
    review = await lock_review(session, review_id)
    await require_edit(session, caller, review)
    emails = rights.people([recipient.name for recipient in distribution], field="distribution.name")
    if ReviewState(review.state) in TERMINAL:
        raise GuardRefused("review_open", f"the review is {review.state}")
    if kind in PER_ORG_UNIT and not org_unit:
        raise Invalid(f"a {kind.value} is per organisational unit", field="org_unit")
    unit = org_unit or ORG_WIDE
    document = await session.scalar(
        select(DocumentRow).where(DocumentRow.kind == kind.value, DocumentRow.org_unit == unit)
    )
    if document is None:
        document = DocumentRow(id=uuid.uuid4(), kind=kind.value, org_unit=unit, title=title, current_version=None)
        session.add(document)
        await session.flush()
    last = await session.scalar(
        select(func.max(DocumentVersionRow.version)).where(DocumentVersionRow.document_id == document.id)
    )
    version = DocumentVersionRow(
        id=uuid.uuid4(),
        document_id=document.id,
        review_id=review.id,
        version=(last or 0) + 1,
        status=Status.DRAFT.value,
        summary=summary,
        created_at=now,
        ack_due_days=ack_due_days,
        distribution=[{**r.model_dump(), "name": email} for r, email in zip(distribution, emails, strict=True)],
    )
    if not review.restricted:  # a restricted review's title for a shared document would leak to the uncleared
        document.title = title
    session.add(version)
    await session.flush()  # acknowledgements reference it; no ORM relationship orders the inserts
    return version


async def change_status(
    session: AsyncSession,
    *,
    version: DocumentVersionRow,
    target: Status,
    certified_by: str | None,
    caller: Caller,
    now: datetime,
) -> DocumentVersionRow:
    """Move a version to `target`, if the caller may edit the documents of the review that produced it."""
    await require_edit(session, caller, await lock_review(session, version.review_id))
    return await move_version(session, version=version, target=target, certified_by=certified_by, now=now)


async def move_version(
    session: AsyncSession, *, version: DocumentVersionRow, target: Status, certified_by: str | None, now: datetime
) -> DocumentVersionRow:
    """Move a version to `target` (the caller's right to do so is checked by `add_version` or `change_status`)."""
    current = Status(version.status)
    if not may_move(current, target):
        raise GuardRefused("document_status", f"{current.value} → {target.value} is not allowed")
    if target is Status.PUBLISHED:
        await _publish(session, version, certified_by, now)
    else:
        version.status = target.value
    return version


async def _publish(session: AsyncSession, version: DocumentVersionRow, certified_by: str | None, now: datetime) -> None:
    if not certified_by:
        raise Invalid("publishing needs `certified_by`", field="certified_by")
    document = await session.get(DocumentRow, version.document_id, with_for_update=True)
    assert document is not None
    if document.current_version is not None and document.current_version > version.version:
        raise GuardRefused("no_rollback", f"version {document.current_version} is already published")
    previous = await session.scalar(
        select(DocumentVersionRow).where(
            DocumentVersionRow.document_id == document.id, DocumentVersionRow.status == Status.PUBLISHED.value
        )
    )
    if previous is not None:
        previous.status = Status.SUPERSEDED.value
    version.status, version.published_at, version.certified_by = Status.PUBLISHED.value, now, certified_by
    document.current_version = version.version
    due = now + timedelta(days=version.ack_due_days)
    for recipient in map(Recipient.model_validate, version.distribution):
        session.add(
            AcknowledgementRow(
                version_id=version.id,
                recipient=recipient.name,
                org_unit=recipient.org_unit,
                required=recipient.required,
                due_at=due,
            )
        )
    review = await lock_review(session, version.review_id)
    record_event(
        session,
        review,
        ReviewEventType.DOCUMENT_PUBLISHED,
        now,
        {
            "document_id": str(document.id),
            "kind": document.kind,
            "org_unit": document.org_unit or None,
            "version": version.version,
            "supersedes": previous.version if previous else None,
            "certified_by": certified_by,
            "recipients": [r["name"] for r in version.distribution],
            "acknowledge_by": due.isoformat(),
            "title": document.title,
            "summary": version.summary,
        },
    )


async def acknowledge(
    session: AsyncSession,
    *,
    document_id: uuid.UUID,
    version: int | None,
    caller: Caller,
    on_behalf_of: str | None = None,
    reason: str | None = None,
    now: datetime,
) -> AcknowledgementRow:
    """Record that the caller holds a published version (the current one unless `version` is given), or, for
    an admin with a reason, that `on_behalf_of` does (recorded as such)."""
    document = await get_row(session, DocumentRow, document_id, what="document")
    recipient = rights.recipient(caller, on_behalf_of=on_behalf_of, reason=reason)
    wanted = version if version is not None else document.current_version
    if wanted is None:
        raise GuardRefused("published", "the document has no published version")
    row = await session.scalar(
        select(AcknowledgementRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(
            DocumentVersionRow.document_id == document_id,
            DocumentVersionRow.version == wanted,
            AcknowledgementRow.recipient == recipient,
        )
    )
    if row is None:
        raise NotFound(f"{recipient!r} is not on version {wanted}'s distribution list")
    if row.acknowledged_at is None:
        row.acknowledged_at, row.recorded_by, row.reason = now, caller.label, reason
        version_row = await session.get(DocumentVersionRow, row.version_id)
        assert version_row is not None
        review = await lock_review(session, version_row.review_id)
        record_event(
            session,
            review,
            ReviewEventType.DOCUMENT_ACKNOWLEDGED,
            now,
            {
                "document_id": str(document.id),
                "version": wanted,
                "recipient": recipient,
                "recorded_by": caller.label,
                "on_behalf": on_behalf_of is not None,
                "reason": reason,
            },
        )
    return row
