"""Dashboard KPIs (DOMAIN.md), each one SQL aggregate: no rows are loaded into Python.

Totals and rates count every review, restricted ones too (no title, id or subject appears in them); the
breakdowns of open reviews by category and by org unit name groups (an org unit is a review's scope, which for a
restricted review may be what must stay hidden), so they count only the reviews the caller may see."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, cast, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from services.strategy_engine.documents import Kind, Status
from services.strategy_engine.lifecycle import TERMINAL, ReviewState
from services.strategy_engine.persistence import (
    AcknowledgementRow,
    DecidedTriggerRow,
    DocumentRow,
    DocumentVersionRow,
    ReviewRow,
    TransitionRow,
    visible_to,
)


class seconds_between(FunctionElement[float]):
    """`later - earlier` in seconds, on Postgres and SQLite."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "postgresql")
def _pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"


@compiles(seconds_between, "sqlite")
def _sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"((julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)})) * 86400.0)"


def _avg(seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    return cast(func.avg(seconds), Float)  # Postgres averages intervals as numeric; report plain floats


def _pct(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((whole > 0, cast(part, Float) * 100.0 / whole), else_=None)


_TERMINAL = [state.value for state in TERMINAL]


TREND_WEEKS = 12
BREAKDOWN_GROUPS = 100
"""The most groups a breakdown lists (the largest first): a scope is a trigger's subject, so there may be many."""


@dataclass(frozen=True, slots=True)
class Week:
    label: str
    start: datetime
    end: datetime


def weeks(now: datetime, count: int = TREND_WEEKS) -> list[Week]:
    """The last `count` ISO weeks (Monday 00:00 UTC to the next), oldest first, the current week last."""
    today = now.astimezone(UTC).date()
    monday = datetime.combine(today - timedelta(days=today.weekday()), time(), tzinfo=UTC)
    starts = [monday - timedelta(weeks=n) for n in reversed(range(count))]
    return [Week(_iso_week(start.date()), start, start + timedelta(weeks=1)) for start in starts]


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


async def compute(session: AsyncSession, now: datetime, *, grants: Collection[str]) -> dict[str, Any]:
    return {
        **await _lead_times(session),
        **await _overdue(session, now),
        **await _copies(session),
        "approval_rework_rate_pct": await _rework(session),
        **await _volumes(session),
        "trend": await _trend(session, weeks(now)),
        "by_category": await _open_by(session, ReviewRow.category.expression, "category", now=now, grants=grants),
        "by_org_unit": await _open_by(session, ReviewRow.scope.expression, "org_unit", now=now, grants=grants),
    }


async def _weekly(session: AsyncSession, at: ColumnElement[datetime], span: list[Week]) -> list[int]:
    """How many rows fall in each week, in one pass."""
    counts = [func.count(case((and_(at >= week.start, at < week.end), 1))) for week in span]
    return [int(n) for n in (await session.execute(select(*counts).where(at >= span[0].start))).one()]


async def _trend(session: AsyncSession, span: list[Week]) -> list[dict[str, Any]]:
    """Triggers accepted (as the engine received them) and reviews opened, per ISO week, oldest first."""
    triggers = await _weekly(session, DecidedTriggerRow.received_at.expression, span)
    opened = await _weekly(session, ReviewRow.opened_at.expression, span)
    return [
        {"week": week.label, "starts": week.start.date().isoformat(), "triggers_accepted": t, "reviews_opened": r}
        for week, t, r in zip(span, triggers, opened, strict=True)
    ]


async def _open_by(
    session: AsyncSession, group: ColumnElement[Any], name: str, *, now: datetime, grants: Collection[str]
) -> list[dict[str, Any]]:
    """Open reviews visible to `grants` per value of `group` (with how many are overdue), largest first."""
    total = func.count()
    late = func.count(case((ReviewRow.due_at < now, 1)))
    query = (
        select(group, total, late)
        .where(ReviewRow.state.not_in(_TERMINAL), visible_to(grants))
        .group_by(group)
        .order_by(total.desc(), group)
        .limit(BREAKDOWN_GROUPS)
    )
    return [{name: value, "open": int(n), "overdue": int(o)} for value, n, o in (await session.execute(query)).all()]


async def _lead_times(session: AsyncSession) -> dict[str, float | None]:
    opening = (
        select(_avg(seconds_between(ReviewRow.opened_at, DecidedTriggerRow.received_at)))
        .select_from(DecidedTriggerRow)
        .join(ReviewRow, ReviewRow.id == DecidedTriggerRow.review_id)
        .where(DecidedTriggerRow.outcome == "opened")
    )
    assessed = (
        select(TransitionRow.review_id, func.min(TransitionRow.at).label("at"))
        .where(
            TransitionRow.from_state == ReviewState.ASSESS.value, TransitionRow.to_state == ReviewState.GENERATE.value
        )
        .group_by(TransitionRow.review_id)
        .subquery()
    )
    to_assessed = (
        select(_avg(seconds_between(assessed.c.at, ReviewRow.opened_at)))
        .select_from(assessed)
        .join(ReviewRow, ReviewRow.id == assessed.c.review_id)
    )
    published = (
        select(DocumentVersionRow.review_id, func.min(DocumentVersionRow.published_at).label("at"))
        .where(DocumentVersionRow.published_at.is_not(None))
        .group_by(DocumentVersionRow.review_id)
        .subquery()
    )
    first = (
        select(DecidedTriggerRow.review_id, func.min(DecidedTriggerRow.received_at).label("at"))
        .where(DecidedTriggerRow.review_id.is_not(None))
        .group_by(DecidedTriggerRow.review_id)
        .subquery()
    )
    to_published = (
        select(_avg(seconds_between(published.c.at, first.c.at)))
        .select_from(published)
        .join(first, first.c.review_id == published.c.review_id)
    )
    return {
        "trigger_to_review_opened_s": await session.scalar(opening),
        "opened_to_assessment_complete_s": await session.scalar(to_assessed),
        "trigger_to_strategy_published_s": await session.scalar(to_published),
    }


async def _overdue(session: AsyncSession, now: datetime) -> dict[str, int]:
    reviews = select(func.count()).where(ReviewRow.due_at < now, ReviewRow.state.not_in(_TERMINAL))
    acks = (
        select(func.count())
        .select_from(AcknowledgementRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(
            DocumentVersionRow.status == Status.PUBLISHED.value,
            AcknowledgementRow.due_at < now,
            AcknowledgementRow.unanswered(),  # a declined one or an exception asked is answered, not overdue
        )
    )
    return {
        "overdue_reviews": int(await session.scalar(reviews) or 0),
        "overdue_acknowledgements": int(await session.scalar(acks) or 0),
    }


async def _copies(session: AsyncSession) -> dict[str, float | None]:
    """Holders of the current copy among required recipients; org units whose tactical plan is current."""
    holders = (
        select(_pct(func.count(AcknowledgementRow.acknowledged_at), func.count()))
        .select_from(AcknowledgementRow)
        .join(DocumentVersionRow, DocumentVersionRow.id == AcknowledgementRow.version_id)
        .where(DocumentVersionRow.status == Status.PUBLISHED.value, AcknowledgementRow.required)
    )
    strategy_published = (
        select(func.max(DocumentVersionRow.published_at))
        .join(DocumentRow, DocumentRow.id == DocumentVersionRow.document_id)
        .where(DocumentRow.kind == Kind.STRATEGY_PLAN.value, DocumentVersionRow.status == Status.PUBLISHED.value)
    ).scalar_subquery()
    current_tactical = and_(
        DocumentRow.kind == Kind.TACTICAL_PLAN.value,
        DocumentVersionRow.status == Status.PUBLISHED.value,
        or_(strategy_published.is_(None), DocumentVersionRow.published_at >= strategy_published),
    )
    units = (
        select(
            _pct(
                func.count(distinct(case((current_tactical, DocumentRow.org_unit)))),
                func.count(distinct(DocumentRow.org_unit)),
            )
        )
        .select_from(DocumentRow)
        .outerjoin(DocumentVersionRow, DocumentVersionRow.document_id == DocumentRow.id)
        .where(DocumentRow.org_unit != "")
    )
    return {
        "current_copy_holders_pct": await session.scalar(holders),
        "org_units_with_current_tactical_plan_pct": await session.scalar(units),
    }


async def _rework(session: AsyncSession) -> float | None:
    into_approval = func.count(case((TransitionRow.to_state == ReviewState.APPROVAL.value, 1)))
    sent_back = func.count(
        case(
            (
                and_(
                    TransitionRow.from_state == ReviewState.APPROVAL.value,
                    TransitionRow.to_state.in_([ReviewState.GENERATE.value, ReviewState.ASSESS.value]),
                ),
                1,
            )
        )
    )
    value: float | None = await session.scalar(select(_pct(sent_back, into_approval)))
    return value


async def _volumes(session: AsyncSession) -> dict[str, Any]:
    by_category = await session.execute(
        select(DecidedTriggerRow.category, func.count())
        .group_by(DecidedTriggerRow.category)
        .order_by(DecidedTriggerRow.category)
    )
    counted = await session.execute(select(DecidedTriggerRow.outcome, func.count()).group_by(DecidedTriggerRow.outcome))
    outcomes: dict[str, int] = {outcome: count for outcome, count in counted.all()}
    merged = await session.scalar(select(func.count()).where(ReviewRow.state == ReviewState.MERGED.value))
    opened, attached = outcomes.get("opened", 0), outcomes.get("attached", 0)
    return {
        "trigger_volume_by_category": {category: count for category, count in by_category.all()},
        "triggers_by_outcome": {"opened": opened, "attached": attached, "recorded": outcomes.get("recorded", 0)},
        "attach_ratio_pct": (attached * 100.0 / (opened + attached)) if opened + attached else None,
        "merged_reviews": int(merged or 0),
    }
