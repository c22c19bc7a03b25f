"""Engine tables (prefix `engine_`) and the queries the flows need. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from services.core.db import Base, UTCDateTime, is_postgres, new_id
from services.core.identity.clearance import ALL
from services.core.outbox import OutboxMixin
from services.strategy_engine.board import SEVERITY_RANK, PageEnd, ReviewSort, SortKey, no_due_date
from services.strategy_engine.documents import DECIDED, RecipientAnswer

_ID = BigInteger().with_variant(Integer(), "sqlite")
ACTOR_LENGTH = 320
"""An actor column holds a caller's label: a person's e-mail (at most 320 characters) or `service:<name>`."""


class ReviewRow(Base):
    """A strategy review cycle. `open_key` equals `correlation_key` while the review collects related
    triggers, and is NULL once it is terminal or a newer review took over the key (its windows passed); the
    unique constraint on it allows one collecting review per key even with several engine replicas."""

    __tablename__ = "engine_reviews"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    correlation_key: Mapped[str] = mapped_column(String(600), index=True)
    open_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    policy_id: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(600))
    category: Mapped[str] = mapped_column(String(50), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str | None] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(20), index=True)
    owner: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    phase_entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    escalate_after_s: Mapped[float] = mapped_column(default=172_800.0)
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    overdue_phase: Mapped[str | None] = mapped_column(String(20))
    escalated_phase: Mapped[str | None] = mapped_column(String(20))
    first_trigger_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_trigger_at: Mapped[datetime] = mapped_column(UTCDateTime())
    merged_into: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_sequence: Mapped[int] = mapped_column(Integer, default=0)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Need-to-know: seen only by callers holding one of its `ReviewClearanceRow` grants (or `*`)."""
    timers_armed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    """Whether the timer loop has planned the current phase's reminders and escalation chain (`TimerRow`);
    entering a phase clears it, so the loop re-arms."""


class ReviewClearanceRow(Base):
    """One grant token that clears a caller to see a restricted review (see `clearance.visible`)."""

    __tablename__ = "engine_review_clearances"

    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), primary_key=True)
    grant: Mapped[str] = mapped_column(String(400), primary_key=True)


class DecidedTriggerRow(Base):
    """Every trigger the engine saw, with the decision taken; unique per trigger, so replays are no-ops."""

    __tablename__ = "engine_triggers"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_engine_triggers_key_time", "policy_id", "correlation_key", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(500))
    category: Mapped[str] = mapped_column(String(50), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_id: Mapped[str] = mapped_column(String(100))
    correlation_key: Mapped[str] = mapped_column(String(600))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(1000))
    review_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TimelineRow(Base):
    """Append-only history of a review: every domain event it emitted, in sequence."""

    __tablename__ = "engine_timeline"
    __table_args__ = (UniqueConstraint("review_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TransitionRow(Base):
    __tablename__ = "engine_transitions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    reason: Mapped[str | None] = mapped_column(String(1000))


class AssessmentRow(Base):
    __tablename__ = "engine_assessments"
    __table_args__ = (UniqueConstraint("review_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    complete: Mapped[bool] = mapped_column(Boolean)
    risk_score: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))


class ApprovalRow(Base):
    __tablename__ = "engine_approvals"
    __table_args__ = (UniqueConstraint("assessment_id", "approver"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    assessment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_assessments.id"), index=True)
    approver: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    verdict: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(String(2000))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class DocumentRow(Base):
    """An output document, organisation-wide (`org_unit` empty) or per organisational unit."""

    __tablename__ = "engine_documents"
    __table_args__ = (UniqueConstraint("kind", "org_unit"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(50))
    org_unit: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(500))
    current_version: Mapped[int | None] = mapped_column(Integer)


class DocumentVersionRow(Base):
    __tablename__ = "engine_document_versions"
    __table_args__ = (UniqueConstraint("document_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_documents.id"), index=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    certified_by: Mapped[str | None] = mapped_column(String(200))
    ack_due_days: Mapped[float] = mapped_column(default=10.0)
    distribution: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class AcknowledgementRow(Base):
    """One recipient (a person, by e-mail) of one published version: due, acknowledged, reminded. An
    acknowledgement an admin recorded on the recipient's behalf has `recorded_by` (the admin) and `reason`;
    `method` says how it was proven (a session, a key, a signed link). A recipient who has not acknowledged
    may have declined or asked for an exception (`decision`, `decided_at`, `decision_reason`).
    `last_acknowledged_version` is the version of the same document they had acknowledged when this one was
    published (None: none)."""

    __tablename__ = "engine_acknowledgements"
    __table_args__ = (UniqueConstraint("version_id", "recipient"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_document_versions.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    org_unit: Mapped[str | None] = mapped_column(String(200))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    reason: Mapped[str | None] = mapped_column(String(1000))
    method: Mapped[str | None] = mapped_column(String(20))
    decision: Mapped[str | None] = mapped_column(String(30))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(String(1000))
    last_acknowledged_version: Mapped[int | None] = mapped_column(Integer)
    timers_armed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    """Whether the timer loop has planned this recipient's reminders (`TimerRow`)."""

    @property
    def answered(self) -> bool:
        """Acknowledged, declined or excused-asked: nothing to remind the recipient of."""
        return self.acknowledged_at is not None or self.decision is not None

    @classmethod
    def awaited(cls) -> ColumnElement[bool]:
        """Still the recipient's to do (My work): neither acknowledged nor declined; one they asked an exception
        for stays until they acknowledge it."""
        return and_(cls.acknowledged_at.is_(None), or_(cls.decision.is_(None), cls.decision != DECLINED))

    @classmethod
    def unanswered(cls) -> ColumnElement[bool]:
        """No answer yet (not acknowledged, not declined, no exception asked): what reminders, due notices and the
        overdue counts are about."""
        return and_(cls.acknowledged_at.is_(None), cls.decision.is_(None))


DECLINED = DECIDED[RecipientAnswer.DECLINE]
"""`AcknowledgementRow.decision` of a recipient who declined the version."""


class TimerRow(Base):
    """A reminder before a due date or an escalation level after it, for the current phase of a review
    (`acknowledgement_id` NULL) or for one acknowledgement; sent once at `fire_at` (then `fired_at` is set).
    Queries: `persistence_timers`."""

    __tablename__ = "engine_timers"
    __table_args__ = (Index("ix_engine_timers_due", "fired_at", "fire_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    review_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("engine_reviews.id"), index=True)
    acknowledgement_id: Mapped[int | None] = mapped_column(ForeignKey("engine_acknowledgements.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    phase: Mapped[str | None] = mapped_column(String(20))
    phase_entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """The phase (and when it began) a phase timer belongs to: a timer of an earlier phase is never sent."""
    level: Mapped[int | None] = mapped_column(Integer)
    before_s: Mapped[int | None] = mapped_column(Integer)
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EngineOutboxRow(OutboxMixin, Base):
    __tablename__ = "engine_outbox"


async def known_triggers(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await session.execute(
        select(DecidedTriggerRow.source, DecidedTriggerRow.event_id).where(
            DecidedTriggerRow.source.in_({s for s, _ in keys}), DecidedTriggerRow.event_id.in_({i for _, i in keys})
        )
    )
    return {(source, event_id) for source, event_id in rows.all()} & set(keys)


async def open_review(session: AsyncSession, key: str, *, lock: bool = False) -> ReviewRow | None:
    return (await open_reviews(session, {key}, lock=lock)).get(key)


async def open_reviews(
    session: AsyncSession, keys: Collection[str], *, lock: bool = False, grants: Collection[str] | None = None
) -> dict[str, ReviewRow]:
    """The reviews collecting triggers for `keys`, by key (locked for the transaction when `lock`); with
    `grants`, only those visible to them."""
    if not keys:
        return {}
    query = select(ReviewRow).where(ReviewRow.open_key.in_(sorted(keys))).order_by(ReviewRow.open_key)  # lock order
    if grants is not None:
        query = query.where(visible_to(grants))
    if lock and is_postgres(session):
        query = query.with_for_update()
    return {row.open_key: row for row in (await session.scalars(query)).all() if row.open_key is not None}


# Need-to-know: the one SQL statement of `clearance.visible`; every read and write route filters with it.


def visible_to(grants: Collection[str]) -> ColumnElement[bool]:
    """Reviews a caller holding `grants` may see: unrestricted ones, those whose clearance list holds one of
    the grants, and all of them for a caller cleared for all restricted data (`*`)."""
    if ALL in grants:
        return true()
    cleared = exists().where(ReviewClearanceRow.review_id == ReviewRow.id, ReviewClearanceRow.grant.in_(sorted(grants)))
    return or_(ReviewRow.restricted.is_(False), cleared)


def trigger_visible_to(grants: Collection[str]) -> ColumnElement[bool]:
    """A trigger is as visible as the review it belongs to (one that belongs to none is not restricted)."""
    if ALL in grants:
        return true()
    return or_(
        DecidedTriggerRow.review_id.is_(None),
        exists().where(ReviewRow.id == DecidedTriggerRow.review_id, visible_to(grants)),
    )


async def visible_review(session: AsyncSession, review_id: uuid.UUID, grants: Collection[str]) -> ReviewRow | None:
    """The review if it exists and the caller may see it (None either way otherwise: the answer is 404)."""
    query = select(ReviewRow).where(ReviewRow.id == review_id, visible_to(grants))
    return await session.scalar(query)


async def clearance_of(session: AsyncSession, review_id: uuid.UUID) -> set[str]:
    query = select(ReviewClearanceRow.grant).where(ReviewClearanceRow.review_id == review_id)
    return set((await session.scalars(query)).all())


# Reads for the dashboard and document routes (transport decodes, calls these, encodes).


async def list_reviews(
    session: AsyncSession,
    *,
    filters: dict[str, str | None],
    overdue: bool | None,
    terminal: Collection[str],
    opened: tuple[datetime | None, datetime | None] = (None, None),
    text: str | None = None,
    sort: ReviewSort = ReviewSort.NEWEST,
    after: PageEnd | None,
    limit: int,
    now: datetime,
    grants: Collection[str],
) -> list[tuple[ReviewRow, SortKey]]:
    """Reviews visible to `grants` in `sort` order (ties by id), each with its sort key; `filters` are exact
    matches on columns (state, category, severity, owner, scope; None: any); `opened` is [from, to); `text`
    is searched in the title and the data of the review's triggers; `after` is the position of the last review
    of the previous page."""
    key = _sort_key(sort)
    query = select(ReviewRow, key).where(visible_to(grants))
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(ReviewRow, name) == value)
    late = and_(ReviewRow.due_at < now, ReviewRow.state.not_in(sorted(terminal)))
    if overdue is not None:
        query = query.where(late if overdue else ~late | ReviewRow.due_at.is_(None))
    start, end = opened
    if start is not None:
        query = query.where(ReviewRow.opened_at >= start)
    if end is not None:
        query = query.where(ReviewRow.opened_at < end)
    if text is not None:
        query = query.where(_mentions(text))
    if after is not None:
        beyond, later_id = (
            (key < after.key, ReviewRow.id < after.id)
            if sort.descending
            else (key > after.key, ReviewRow.id > after.id)
        )
        query = query.where(or_(beyond, and_(key == after.key, later_id)))
    order = (key.desc(), ReviewRow.id.desc()) if sort.descending else (key.asc(), ReviewRow.id.asc())
    rows = await session.execute(query.order_by(*order).limit(limit))
    return [(row, value) for row, value in rows.all()]


def _sort_key(sort: ReviewSort) -> ColumnElement[Any]:
    """What `sort` orders by, as SQL: no due date sorts last both ways, severities by rank, titles ignoring case."""
    if sort.key == "opened_at":
        return ReviewRow.opened_at.expression
    if sort.key == "due_at":
        return func.coalesce(ReviewRow.due_at, literal(no_due_date(sort), UTCDateTime()))
    if sort.key == "severity":
        return case(SEVERITY_RANK, value=ReviewRow.severity, else_=0)
    return func.lower(ReviewRow.title)


def _mentions(text: str) -> ColumnElement[bool]:
    """The title or a trigger's data (as JSON text) contains `text`, ignoring case as the database's `lower` does
    (on SQLite: ASCII letters only); LIKE's wildcards in `text` are taken literally."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    pattern = func.lower(literal(f"%{escaped}%", String()))
    # One pass over the triggers (a hashed subplan on PostgreSQL), not a correlated lookup per review: measured
    # by the bench's console stage over 10,000 reviews.
    in_data = ReviewRow.id.in_(
        select(DecidedTriggerRow.review_id).where(
            DecidedTriggerRow.review_id.is_not(None),
            func.lower(cast(DecidedTriggerRow.data, Text)).like(pattern, escape="/"),
        )
    )
    return or_(func.lower(ReviewRow.title).like(pattern, escape="/"), in_data)


async def review_triggers(session: AsyncSession, review_id: uuid.UUID) -> list[DecidedTriggerRow]:
    query = (
        select(DecidedTriggerRow)
        .where(DecidedTriggerRow.review_id == review_id)
        .order_by(DecidedTriggerRow.occurred_at, DecidedTriggerRow.id)
    )
    return list((await session.scalars(query)).all())


async def review_documents(session: AsyncSession, review_id: uuid.UUID) -> list[tuple[DocumentVersionRow, DocumentRow]]:
    query = (
        select(DocumentVersionRow, DocumentRow)
        .join(DocumentRow, DocumentRow.id == DocumentVersionRow.document_id)
        .where(DocumentVersionRow.review_id == review_id)
        .order_by(DocumentVersionRow.created_at)
    )
    return [(version, document) for version, document in (await session.execute(query)).all()]


async def timeline(session: AsyncSession, review_id: uuid.UUID) -> list[TimelineRow]:
    query = select(TimelineRow).where(TimelineRow.review_id == review_id).order_by(TimelineRow.sequence)
    return list((await session.scalars(query)).all())


async def decision_of(
    session: AsyncSession, *, source: str, event_id: str, grants: Collection[str]
) -> DecidedTriggerRow | None:
    """The decision for one trigger, unless it belongs to a review hidden from `grants`."""
    query = select(DecidedTriggerRow).where(
        DecidedTriggerRow.source == source, DecidedTriggerRow.event_id == event_id, trigger_visible_to(grants)
    )
    return await session.scalar(query)


def _version_visible_to(grants: Collection[str], version: Any = DocumentVersionRow) -> ColumnElement[bool]:
    """A document version (`version`: the entity or an alias of it) is as visible as the review that produced it."""
    if ALL in grants:
        return true()
    return exists().where(ReviewRow.id == version.review_id, visible_to(grants))


async def document_version(
    session: AsyncSession, document_id: uuid.UUID, number: int, grants: Collection[str]
) -> DocumentVersionRow | None:
    """Version `number` of the document, unless its review is hidden from `grants`."""
    query = select(DocumentVersionRow).where(
        DocumentVersionRow.document_id == document_id,
        DocumentVersionRow.version == number,
        _version_visible_to(grants),
    )
    return await session.scalar(query)


async def document_versions(
    session: AsyncSession, document_id: uuid.UUID, grants: Collection[str]
) -> list[DocumentVersionRow]:
    """The document's versions produced by reviews visible to `grants`, in order."""
    query = (
        select(DocumentVersionRow)
        .where(DocumentVersionRow.document_id == document_id, _version_visible_to(grants))
        .order_by(DocumentVersionRow.version)
    )
    return list((await session.scalars(query)).all())


async def acknowledgements_of(
    session: AsyncSession, version_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[AcknowledgementRow]]:
    """Recipients of each version, in one query for all of them (in insertion order)."""
    found: dict[uuid.UUID, list[AcknowledgementRow]] = {version_id: [] for version_id in version_ids}
    if found:
        query = (
            select(AcknowledgementRow)
            .where(AcknowledgementRow.version_id.in_(list(found)))
            .order_by(AcknowledgementRow.id)
        )
        for row in (await session.scalars(query)).all():
            found[row.version_id].append(row)
    return found


# "My work": what waits on one person (GET /v1/me/pending), need-to-know filtered like every other read.


def _owned_by(email: str) -> ColumnElement[bool]:
    """Owners are stored as e-mail addresses (a policy may name one in any case): compared as `rights.is_owner` does."""
    return func.lower(func.trim(ReviewRow.owner)) == email


def _due_first() -> tuple[ColumnElement[Any], ...]:
    """Soonest due first, those without a due date last; then oldest first."""
    return (ReviewRow.due_at.is_(None), ReviewRow.due_at.asc(), ReviewRow.opened_at.asc(), ReviewRow.id.asc())


async def _page_and_tally(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    *,
    order: Sequence[ColumnElement[Any]],
    limit: int,
    late: ColumnElement[bool],
) -> tuple[list[Any], int, int]:
    """The first `limit` rows of `query` in `order`, how many rows it selects in all, and how many are `late`."""
    rows = (await session.execute(query.order_by(*order).limit(limit))).all()
    counted = query.with_only_columns(func.count(), func.count(case((late, 1))), maintain_column_froms=True)
    total, overdue = (await session.execute(counted)).one()
    return list(rows), int(total), int(overdue)


async def reviews_owned(
    session: AsyncSession, *, email: str, terminal: Collection[str], grants: Collection[str], now: datetime, limit: int
) -> tuple[list[ReviewRow], int, int]:
    """Open reviews owned by `email` visible to `grants`, soonest due first (at most `limit`), with how many
    there are and how many of those are overdue."""
    query = select(ReviewRow).where(_owned_by(email), ReviewRow.state.not_in(sorted(terminal)), visible_to(grants))
    rows, total, overdue = await _page_and_tally(
        session, query, order=_due_first(), limit=limit, late=ReviewRow.due_at < now
    )
    return [row for (row,) in rows], total, overdue


async def awaiting_verdict(
    session: AsyncSession, *, email: str, state: str, grants: Collection[str]
) -> list[tuple[ReviewRow, AssessmentRow]]:
    """Reviews in `state` (where verdicts are given) visible to `grants`, with their current assessment, on which
    `email` has given no verdict yet, soonest due first. Whether the assessment names `email` among its
    approvers is the caller's to check: the text of the body only narrows the candidates here."""
    newer = aliased(AssessmentRow)
    latest = ~exists().where(newer.review_id == AssessmentRow.review_id, newer.version > AssessmentRow.version)
    query = (
        select(ReviewRow, AssessmentRow)
        .join(AssessmentRow, AssessmentRow.review_id == ReviewRow.id)
        .where(
            ReviewRow.state == state,
            visible_to(grants),
            latest,
            ~exists().where(ApprovalRow.assessment_id == AssessmentRow.id, ApprovalRow.approver == email),
        )
        .order_by(*_due_first())
    )
    if email.isascii() and orjson.dumps(email).decode() == f'"{email}"':  # as stored: JSON escapes none of it
        query = query.where(func.lower(cast(AssessmentRow.body, Text)).contains(email, autoescape=True))
    return [(review, assessment) for review, assessment in (await session.execute(query)).all()]


async def unacknowledged(
    session: AsyncSession,
    *,
    recipient: str,
    status: str,
    grants: Collection[str],
    now: datetime,
    limit: int,
) -> tuple[list[tuple[AcknowledgementRow, DocumentVersionRow, DocumentRow, ReviewRow]], int, int]:
    """Versions in `status` (published) that `recipient` has neither acknowledged nor declined, from reviews
    visible to `grants`, soonest due first (at most `limit`), with how many there are and how many of those
    are overdue."""
    query = (
        select(AcknowledgementRow, DocumentVersionRow, DocumentRow, ReviewRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .join(DocumentRow, DocumentRow.id == DocumentVersionRow.document_id)
        .join(ReviewRow, ReviewRow.id == DocumentVersionRow.review_id)
        .where(
            AcknowledgementRow.recipient == recipient,
            AcknowledgementRow.awaited(),
            DocumentVersionRow.status == status,
            visible_to(grants),
        )
    )
    rows, total, overdue = await _page_and_tally(
        session,
        query,
        order=(AcknowledgementRow.due_at.asc(), AcknowledgementRow.id.asc()),
        limit=limit,
        late=AcknowledgementRow.due_at < now,
    )
    return [(ack, version, document, review) for ack, version, document, review in rows], total, overdue


# Acknowledgement campaigns: who acknowledged what before, the register of documents.


async def last_acknowledged(
    session: AsyncSession, document_id: uuid.UUID, recipients: Collection[str], *, before: int
) -> tuple[dict[str, int], set[str]]:
    """For each of `recipients`: the latest version of the document (older than `before`) they acknowledged,
    and who of them was a recipient of an older version at all."""
    if not recipients:
        return {}, set()
    query = (
        select(AcknowledgementRow.recipient, DocumentVersionRow.version, AcknowledgementRow.acknowledged_at)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(
            DocumentVersionRow.document_id == document_id,
            DocumentVersionRow.version < before,
            AcknowledgementRow.recipient.in_(sorted(recipients)),
        )
    )
    latest: dict[str, int] = {}
    received: set[str] = set()
    for recipient, version, acknowledged_at in (await session.execute(query)).all():
        received.add(recipient)
        if acknowledged_at is not None and version > latest.get(recipient, 0):
            latest[recipient] = version
    return latest, received


async def published_versions(session: AsyncSession, document_id: uuid.UUID) -> list[tuple[DocumentVersionRow, bool]]:
    """The document's versions ever published (published or superseded), each with whether its review is
    restricted, in version order."""
    query = (
        select(DocumentVersionRow, ReviewRow.restricted)
        .join(ReviewRow, ReviewRow.id == DocumentVersionRow.review_id)
        .where(DocumentVersionRow.document_id == document_id, DocumentVersionRow.published_at.is_not(None))
        .order_by(DocumentVersionRow.version)
    )
    return [(version, bool(restricted)) for version, restricted in (await session.execute(query)).all()]


async def acknowledgement_of(
    session: AsyncSession, document_id: uuid.UUID, version: int, recipient: str, *, lock: bool = False
) -> AcknowledgementRow | None:
    """`recipient`'s row of version `version` of the document (locked for the rest of the transaction)."""
    query = (
        select(AcknowledgementRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(
            DocumentVersionRow.document_id == document_id,
            DocumentVersionRow.version == version,
            AcknowledgementRow.recipient == recipient,
        )
    )
    if lock and is_postgres(session):
        query = query.with_for_update(of=AcknowledgementRow)
    return await session.scalar(query)


async def register(
    session: AsyncSession,
    *,
    kind: str | None,
    org_unit: str | None,
    status: str | None,
    has_overdue: bool | None,
    text: str | None,
    after: tuple[str, uuid.UUID] | None,
    limit: int,
    now: datetime,
    grants: Collection[str],
) -> list[tuple[DocumentRow, DocumentVersionRow, int, bool, str]]:
    """Documents with a version visible to `grants`, by title (ignoring case) then id, each with its latest
    visible version, how many acknowledgements of its current version are overdue (neither acknowledged
    nor answered, past due), whether that current version is visible to `grants` too, and its title key (the
    database's lower case, for the next page's cursor). `status` is the latest visible version's; `text` is
    searched in the title; `after` is the (title key, id) of the previous page's last document."""
    newest = (
        select(DocumentVersionRow.document_id, func.max(DocumentVersionRow.version).label("number"))
        .where(_version_visible_to(grants))
        .group_by(DocumentVersionRow.document_id)
        .subquery()
    )
    current = aliased(DocumentVersionRow)
    late = (
        select(func.count())
        .select_from(AcknowledgementRow)
        .join(current, current.id == AcknowledgementRow.version_id)
        .where(
            current.document_id == DocumentRow.id,
            current.version == DocumentRow.current_version,
            AcknowledgementRow.unanswered(),
            AcknowledgementRow.due_at < now,
            exists().where(ReviewRow.id == current.review_id, visible_to(grants)),
        )
        .scalar_subquery()
    )
    shown = aliased(DocumentVersionRow)
    current_seen = exists().where(
        shown.document_id == DocumentRow.id,
        shown.version == DocumentRow.current_version,
        _version_visible_to(grants, shown),
    )
    key = func.lower(DocumentRow.title)
    query = (
        select(DocumentRow, DocumentVersionRow, late, current_seen, key)
        .join(newest, newest.c.document_id == DocumentRow.id)
        .join(
            DocumentVersionRow,
            and_(DocumentVersionRow.document_id == DocumentRow.id, DocumentVersionRow.version == newest.c.number),
        )
    )
    if kind is not None:
        query = query.where(DocumentRow.kind == kind)
    if org_unit is not None:
        query = query.where(DocumentRow.org_unit == org_unit)
    if status is not None:
        query = query.where(DocumentVersionRow.status == status)
    if has_overdue is not None:
        query = query.where(late > 0 if has_overdue else late == 0)
    if text is not None:
        escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
        query = query.where(key.like(func.lower(literal(f"%{escaped}%", String())), escape="/"))
    if after is not None:
        query = query.where(or_(key > after[0], and_(key == after[0], DocumentRow.id > after[1])))
    rows = await session.execute(query.order_by(key, DocumentRow.id).limit(limit))
    return [(document, version, int(overdue), bool(seen), title) for document, version, overdue, seen, title in rows]
