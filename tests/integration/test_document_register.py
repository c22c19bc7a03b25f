"""The document register and need-to-know: a document whose current version came from a restricted review is listed
to an uncleared caller with the versions they may see, and without naming the current one (its number alone would
say that a hidden version exists); the next page's cursor is the database's own lower-cased title."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.core.db import UnitOfWork
from services.core.identity.clearance import ALL
from services.strategy_engine import persistence
from services.strategy_engine.lifecycle import ReviewState
from services.strategy_engine.persistence import DocumentRow, DocumentVersionRow, ReviewRow

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _review(*, restricted: bool) -> ReviewRow:
    review_id = uuid.uuid4()
    return ReviewRow(
        id=review_id,
        correlation_key=f"k{review_id}",
        open_key=f"k{review_id}",
        policy_id="p",
        title="t",
        category="merger_acquisition" if restricted else "regulation_update",
        severity="high",
        scope="group",
        state=ReviewState.PUBLISH.value,
        opened_at=NOW,
        phase_entered_at=NOW,
        first_trigger_at=NOW,
        last_trigger_at=NOW,
        event_sequence=0,
        restricted=restricted,
    )


Entry = tuple[DocumentRow, DocumentVersionRow, int, bool, str]


async def _register(uow: UnitOfWork, grants: frozenset[str], after: tuple[str, uuid.UUID] | None = None) -> list[Entry]:
    async with uow.begin() as session:
        return await persistence.register(
            session,
            kind=None,
            org_unit=None,
            status=None,
            has_overdue=None,
            text=None,
            after=after,
            limit=10,
            now=NOW,
            grants=grants,
        )


async def test_a_hidden_current_version_is_not_named_and_the_next_page_follows_on(uow: UnitOfWork) -> None:
    public, secret = _review(restricted=False), _review(restricted=True)
    document = DocumentRow(id=uuid.uuid4(), kind="strategy_plan", org_unit="", title="Ärger plan", current_version=2)
    other = DocumentRow(id=uuid.uuid4(), kind="tactical_plan", org_unit="ops", title="ärger tactics")
    async with uow.begin() as session:
        session.add_all([public, secret, document, other])
        await session.flush()
        for number, review, status in ((1, public, "superseded"), (2, secret, "published")):
            session.add(
                DocumentVersionRow(
                    document_id=document.id,
                    review_id=review.id,
                    version=number,
                    status=status,
                    summary="s",
                    created_at=NOW,
                    published_at=NOW,
                )
            )
        session.add(
            DocumentVersionRow(
                document_id=other.id, review_id=public.id, version=1, status="draft", summary="s", created_at=NOW
            )
        )
    uncleared = frozenset({"principal:someone"})
    [(_, shown, _, seen, _), _] = await _register(uow, uncleared)
    assert (shown.version, seen) == (1, False)  # v1 listed; v2 (current, restricted) not even by number
    [(_, newest, _, seen_all, key), _] = await _register(uow, frozenset({ALL}))
    assert (newest.version, seen_all) == (2, True)
    rest = await _register(uow, frozenset({ALL}), after=(key, document.id))  # the cursor the next page gets
    assert [row[0].id for row in rest] == [other.id]
