"""Document versions: draft → in review → approved → published; publishing supersedes the previous
published version (no rollback) and resolves its distribution list (people, org units, roles) into
acknowledgements with due dates, each with what changed since the version that person last acknowledged.
Recipients acknowledge (signed in, or with a signed link), decline or ask for an exception."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType
from services.core.db import get_row
from services.core.identity import store
from services.core.identity.model import AuthMethod, Caller, PrincipalKind, clearance_tokens, normal_email
from services.core.links import AckLink, LinkRefused
from services.strategy_engine import persistence, rights
from services.strategy_engine.documents import (
    DECIDED,
    MAX_RECIPIENTS,
    PER_ORG_UNIT,
    Kind,
    Published,
    Recipient,
    RecipientAnswer,
    Resolved,
    Status,
    changes_limit,
    changes_since,
    may_move,
    merge,
)
from services.strategy_engine.errors import Conflict, Forbidden, GuardRefused, Invalid, NotFound
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
    """A new draft version of the (kind, org unit) document, produced by this review; its distribution names
    people (by e-mail), org units and roles, resolved into people when it is published."""
    review = await lock_review(session, review_id)
    await require_edit(session, caller, review)
    named = [entry.name for entry in distribution if entry.name is not None]
    emails = iter(rights.people(named, field="distribution.name"))
    entries = [
        {**entry.model_dump(mode="json"), **({"name": next(emails)} if entry.name is not None else {})}
        for entry in distribution
    ]
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
        distribution=entries,
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
    people = await resolve(session, [Recipient.model_validate(entry) for entry in version.distribution])
    if len(people) > MAX_RECIPIENTS:
        raise Invalid(
            f"the distribution names {len(people):,} people; one version goes to at most {MAX_RECIPIENTS:,} "
            "(publish per org unit instead)",
            field="distribution",
        )
    review = await lock_review(session, version.review_id)
    details = await _changes(session, document.id, version, people, restricted=review.restricted)
    for person in people:
        session.add(
            AcknowledgementRow(
                version_id=version.id,
                recipient=person.email,
                org_unit=person.org_unit,
                required=person.required,
                due_at=due,
                last_acknowledged_version=details[person.email]["last_acknowledged_version"],
            )
        )
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
            "recipients": [person.email for person in people],
            "recipients_detail": [details[person.email] for person in people],
            "acknowledge_by": due.isoformat(),
            "title": document.title,
            "summary": version.summary,
        },
    )


async def resolve(session: AsyncSession, entries: Sequence[Recipient]) -> list[Resolved]:
    """The people a distribution names, now: a person as named; an org unit's members (and, with `sub_units`,
    those of every unit under it); a role's holders. Disabled principals are left out; each person once; an
    entry that leaves nobody is refused (422)."""
    found: list[tuple[Recipient, list[str]]] = []
    for entry in entries:
        if entry.name is not None:
            emails = [normal_email(entry.name)]
        elif entry.role is not None:
            emails = await store.holders_of(session, entry.role)
        else:
            try:
                emails = await store.members_of(session, entry.org_unit or "", below=entry.sub_units, enabled_only=True)
            except NotFound:
                emails = []
        found.append((entry, emails))
    disabled = await store.disabled_among(session, [email for _, emails in found for email in emails])
    return merge([(entry, [email for email in emails if email not in disabled]) for entry, emails in found])


async def _changes(
    session: AsyncSession,
    document_id: uuid.UUID,
    version: DocumentVersionRow,
    people: Sequence[Resolved],
    *,
    restricted: bool,
) -> dict[str, dict[str, object]]:
    """Per recipient: the version of this document they last acknowledged and what changed since (`changes`)."""
    emails = [person.email for person in people]
    latest, received = await persistence.last_acknowledged(session, document_id, emails, before=version.version)
    earlier = [
        Published(version=v.version, published_at=v.published_at, summary=v.summary, restricted=hidden)
        for v, hidden in await persistence.published_versions(session, document_id)
        if v.version < version.version
    ]
    history = [
        *earlier,
        Published(
            version=version.version, published_at=version.published_at, summary=version.summary, restricted=restricted
        ),
    ]
    limit = changes_limit(len(emails))
    return {
        email: {
            "email": email,
            "last_acknowledged_version": latest.get(email),
            "changes": changes_since(latest.get(email), history, received_before=email in received, limit=limit),
        }
        for email in emails
    }


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
    # Locked, as the link and the decline lock it: two answers at once are recorded one after the other.
    row = await persistence.acknowledgement_of(session, document_id, wanted, recipient, lock=True)
    if row is None:
        raise NotFound(f"{recipient!r} is not on version {wanted}'s distribution list")
    if row.acknowledged_at is None:
        row.acknowledged_at, row.recorded_by, row.reason = now, caller.label, reason
        row.method = caller.method.value
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
                "method": caller.method.value,
            },
        )
    return row


async def decide(
    session: AsyncSession,
    *,
    document_id: uuid.UUID,
    version: int | None,
    caller: Caller,
    decision: RecipientAnswer,
    reason: str,
    now: datetime,
) -> AcknowledgementRow:
    """The caller, a recipient, declines the version (the current one unless `version` is given) or asks to be
    excused from it, with a reason; the latest answer counts until they acknowledge. Once acknowledged, a
    version is held: it can no longer be declined."""
    if caller.email is None:
        raise Forbidden(f"{caller.label} is no person: a recipient answers as themself")
    document = await get_row(session, DocumentRow, document_id, what="document")
    wanted = version if version is not None else document.current_version
    if wanted is None:
        raise GuardRefused("published", "the document has no published version")
    row = await persistence.acknowledgement_of(session, document_id, wanted, caller.email, lock=True)
    if row is None:
        raise NotFound(f"{caller.email!r} is not on version {wanted}'s distribution list")
    if row.acknowledged_at is not None:
        raise GuardRefused(
            "acknowledged", f"{caller.email} acknowledged version {wanted} on {row.acknowledged_at:%Y-%m-%d}"
        )
    row.decision, row.decided_at, row.decision_reason = DECIDED[decision], now, reason
    return row


async def link_caller(session: AsyncSession, recipient: str) -> Caller:
    """Who a signed link acts as: its recipient, as the principal they are (refused if disabled), or, for a
    recipient who is no principal, a person with no role and only their own clearance token."""
    email = normal_email(recipient)
    row = await store.principal_by_email(session, email)
    if row is not None:
        if row.disabled_at is not None:
            raise Forbidden(f"{email} is disabled: their links no longer acknowledge anything")
        return await store.caller_of(session, row, method=AuthMethod.SIGNED_LINK, credential=())
    return Caller(
        principal_id=None,
        kind=PrincipalKind.PERSON,
        name=email,
        email=email,
        roles=frozenset(),
        scopes=frozenset(),
        method=AuthMethod.SIGNED_LINK,
        grants=clearance_tokens(email=email, roles=(), units=(), cleared=False),
    )


async def acknowledge_by_link(
    session: AsyncSession, *, link: AckLink, caller: Caller, now: datetime
) -> AcknowledgementRow:
    """Record the acknowledgement a verified link allows, once: a link whose acknowledgement is already
    recorded (by this link, another one, or after sign-in) is refused, so a link works once."""
    version = await persistence.document_version(session, link.document_id, link.version, caller.grants)
    if version is None:
        raise NotFound(f"no version {link.version} of document {link.document_id}")
    if version.status != Status.PUBLISHED.value:
        raise LinkRefused(
            "other_version",
            f"this link is for version {link.version}, which a later version has replaced: open the document "
            "and acknowledge the current one",
        )
    row = await persistence.acknowledgement_of(session, link.document_id, link.version, caller.label, lock=True)
    if row is None:
        raise NotFound(f"{caller.label!r} is not on version {link.version}'s distribution list")
    if row.acknowledged_at is not None:
        raise Conflict(
            f"version {link.version} was already acknowledged by {row.recipient} at "
            f"{row.acknowledged_at:%Y-%m-%d %H:%M UTC}: a link works once",
            link="used",
        )
    if row.decision is not None:  # a forwarded mail must not overturn an answer its recipient gave
        raise Conflict(
            f"{row.recipient} answered version {link.version} ({row.decision.replace('_', ' ')}) on "
            f"{row.decided_at or now:%Y-%m-%d}: sign in to change that answer",
            link="answered",
        )
    return await acknowledge(session, document_id=link.document_id, version=link.version, caller=caller, now=now)
