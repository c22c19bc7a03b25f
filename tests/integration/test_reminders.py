"""Reminders before due dates and escalation chains, with an injected clock on Postgres: each sent exactly once,
also by two engine replicas ticking at the same time."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from sqlalchemy import event, func, select

from services.core.db import UnitOfWork, create_engine
from services.core.identity import store
from services.core.identity.model import Role
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.strategy_engine.flows.cycle import enter
from services.strategy_engine.lifecycle import ReviewState
from services.strategy_engine.persistence import (
    AcknowledgementRow,
    DocumentRow,
    DocumentVersionRow,
    EngineOutboxRow,
    ReviewRow,
    TimelineRow,
    TimerRow,
)
from services.strategy_engine.policies import PolicySet
from services.strategy_engine.timers import BATCH, TimerLoop

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
OFFSETS = (7 * DAY, DAY)
POLICIES = PolicySet.model_validate(
    {
        "policies": [
            {
                "id": "deals",
                "action": "open_review",
                "escalation": [
                    {"after": "2d", "to": "manager"},
                    {"after": "4d", "to": "org_unit_lead"},
                    {"after": "7d", "to": ["cio@example.org", "nobody@example.org"]},
                ],
            },
            {"id": "plain", "action": "open_review", "escalate_after": "2d"},
        ]
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _loop(uow: UnitOfWork, settings: Settings, clock: Clock) -> TimerLoop:
    producer = cast(AIOKafkaProducer, None)  # the relay is only woken here, never run
    relay = OutboxRelay(uow=uow, row=EngineOutboxRow, producer=producer, settings=settings)
    return TimerLoop(uow=uow, relay=relay, interval_s=1, policies=POLICIES, reminder_offsets=OFFSETS, clock=clock)


async def _people(uow: UnitOfWork) -> None:
    async with uow.begin() as session:
        for email in ("boss@example.org", "lead@example.org", "cio@example.org"):
            await store.create_person(session, email=email, name=email, roles=[Role.VIEWER], now=T0)
        await store.create_person(
            session, email="owner@example.org", name="o", roles=[Role.CONTRIBUTOR], manager="boss@example.org", now=T0
        )
        await store.create_person(session, email="loner@example.org", name="l", roles=[Role.CONTRIBUTOR], now=T0)
        await store.create_unit(session, name="Finance", parent=None, lead="lead@example.org", now=T0)
        await store.create_unit(session, name="Leaderless", parent=None, lead=None, now=T0)


async def _review(
    uow: UnitOfWork,
    *,
    policy: str = "deals",
    owner: str | None = "owner@example.org",
    scope: str = "Finance",
    due_in: timedelta = 10 * DAY,
    recipients: tuple[str, ...] = (),
) -> uuid.UUID:
    """A review in `assess` since T0, due `due_in` later; a published version awaits `recipients` by the same date."""
    review_id = uuid.uuid4()
    async with uow.begin() as session:
        session.add(
            ReviewRow(
                id=review_id,
                correlation_key=f"k{review_id}",
                open_key=f"k{review_id}",
                policy_id=policy,
                title="t",
                category="merger_acquisition",
                severity="high",
                scope=scope,
                state=ReviewState.ASSESS.value,
                owner=owner,
                opened_at=T0,
                phase_entered_at=T0,
                due_at=T0 + due_in,
                escalate_after_s=2 * 86_400,
                escalate_at=T0 + due_in + 2 * DAY,
                first_trigger_at=T0,
                last_trigger_at=T0,
                event_sequence=0,
            )
        )
        await session.flush()
        if recipients:
            document = DocumentRow(id=uuid.uuid4(), kind="strategy_plan", org_unit=f"u{review_id}", title="plan")
            version = DocumentVersionRow(
                id=uuid.uuid4(),
                document_id=document.id,
                review_id=review_id,
                version=1,
                status="published",
                summary="s",
                created_at=T0,
                published_at=T0,
            )
            session.add(document)
            await session.flush()
            session.add(version)
            await session.flush()
            for recipient in recipients:
                session.add(AcknowledgementRow(version_id=version.id, recipient=recipient, due_at=T0 + due_in))
    return review_id


async def _events(uow: UnitOfWork, review_id: uuid.UUID | None = None) -> list[tuple[str, dict[str, Any]]]:
    query = select(TimelineRow).order_by(TimelineRow.review_id, TimelineRow.sequence)
    if review_id is not None:
        query = query.where(TimelineRow.review_id == review_id)
    async with uow.begin() as session:
        return [(row.type, row.data) for row in (await session.scalars(query)).all()]


async def _around(loop: TimerLoop, clock: Clock, moment: datetime) -> list[int]:
    """Tick many times just before, at and just after `moment`: what each tick fired."""
    fired = []
    for at in (moment - timedelta(minutes=1), moment - SECOND, moment, moment, moment + SECOND, moment + DAY / 24):
        clock.now = at
        fired.append(await loop.tick())
    return fired


async def test_a_week_and_a_day_before_and_at_the_due_date_each_notice_once(
    uow: UnitOfWork, settings: Settings
) -> None:
    await _people(uow)
    review = await _review(uow, recipients=("cfo@example.org",))
    clock = Clock()
    loop = _loop(uow, settings, clock)
    assert await loop.tick() == 0  # arms
    due = T0 + 10 * DAY
    assert await _around(loop, clock, due - 7 * DAY) == [0, 0, 2, 0, 0, 0]  # the owner and the recipient
    assert await _around(loop, clock, due - DAY) == [0, 0, 2, 0, 0, 0]
    assert await _around(loop, clock, due) == [0, 0, 2, 0, 0, 0]  # review.overdue, document.acknowledgement_due
    events = await _events(uow, review)
    assert Counter(type_ for type_, _ in events) == {
        "review.reminder": 4,
        "review.overdue": 1,
        "document.acknowledgement_due": 1,
    }
    reminders = [data for type_, data in events if type_ == "review.reminder"]
    phase = [d for d in reminders if d["about"] == "phase"]
    ack = [d for d in reminders if d["about"] == "acknowledgement"]
    assert [(d["recipient"], d["before_s"], d["phase"]) for d in phase] == [
        ("owner@example.org", 7 * 86_400, "assess"),
        ("owner@example.org", 86_400, "assess"),
    ]
    assert all(datetime.fromisoformat(d["due_at"]) == due for d in reminders)
    assert [(d["recipient"], d["before_s"], d["kind"], d["version"]) for d in ack] == [
        ("cfo@example.org", 7 * 86_400, "strategy_plan", 1),
        ("cfo@example.org", 86_400, "strategy_plan", 1),
    ]


async def test_a_reminder_whose_time_passed_before_the_phase_began_is_never_sent(
    uow: UnitOfWork, settings: Settings
) -> None:
    await _people(uow)
    review = await _review(uow, due_in=2 * DAY)  # a 2-day phase: "7 days before" was before it began
    clock = Clock()
    loop = _loop(uow, settings, clock)
    assert await loop.tick() == 0
    assert await _around(loop, clock, T0 + DAY) == [0, 0, 1, 0, 0, 0]
    assert await _around(loop, clock, T0 + 2 * DAY) == [0, 0, 1, 0, 0, 0]  # overdue
    events = await _events(uow, review)
    assert [d["before_s"] for t, d in events if t == "review.reminder"] == [86_400]


async def test_the_chain_walks_manager_lead_and_named_people_with_its_gaps(uow: UnitOfWork, settings: Settings) -> None:
    await _people(uow)
    review = await _review(uow)
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()
    due = T0 + 10 * DAY
    clock.now = due + SECOND
    await loop.tick()  # overdue
    for days, fired in ((2, [0, 0, 1, 0, 0, 0]), (4, [0, 0, 1, 0, 0, 0]), (7, [0, 0, 2, 0, 0, 0])):
        assert await _around(loop, clock, due + days * DAY) == fired, days
    clock.now = due + 60 * DAY
    assert await loop.tick() == 0
    escalated = [data for type_, data in await _events(uow, review) if type_ == "review.escalated"]
    assert [(d["level"], d["target_kind"], d["target"], d["days_overdue"]) for d in escalated] == [
        (1, "manager", "boss@example.org", 2.0),
        (2, "org_unit_lead", "lead@example.org", 4.0),
        (3, "named", "cio@example.org", 7.0),
        (3, "named", None, 7.0),
    ]
    assert escalated[3]["unresolved"] == "no person with e-mail nobody@example.org"
    assert all("unresolved" not in d for d in escalated[:3])
    assert all(d["phase"] == "assess" and d["owner"] == "owner@example.org" for d in escalated)


async def test_a_level_that_reaches_nobody_says_why_and_the_chain_goes_on(uow: UnitOfWork, settings: Settings) -> None:
    await _people(uow)
    no_manager = await _review(uow, policy="plain", owner="loner@example.org")
    no_lead = await _review(uow, policy="plain", scope="Leaderless")
    no_owner = await _review(uow, policy="plain", owner=None, scope="Nowhere")
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()
    clock.now = T0 + 10 * DAY + 4 * DAY  # both default levels (2 and 4 days overdue) at once
    await loop.tick()

    async def chain(review: uuid.UUID) -> list[tuple[int, str, str | None, str | None]]:
        events = await _events(uow, review)
        return [
            (d["level"], d["target_kind"], d["target"], d.get("unresolved"))
            for t, d in events
            if t == "review.escalated"
        ]

    assert await chain(no_manager) == [
        (1, "manager", None, "the owner loner@example.org has no manager"),
        (2, "org_unit_lead", "lead@example.org", None),
    ]
    assert await chain(no_lead) == [
        (1, "manager", "boss@example.org", None),
        (2, "org_unit_lead", None, "the org unit 'Leaderless' has no lead"),
    ]
    assert await chain(no_owner) == [
        (1, "manager", None, "the review has no owner"),
        (2, "org_unit_lead", None, "there is no org unit 'Nowhere' (the review's scope)"),
    ]
    types = Counter(t for t, _ in await _events(uow, no_owner))
    assert types["review.reminder"] == 0  # nobody to remind; the due date and the chain still come


async def test_a_new_phase_cancels_the_old_phases_timers_and_arms_its_own(uow: UnitOfWork, settings: Settings) -> None:
    await _people(uow)
    review = await _review(uow)
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()
    clock.now = T0 + 3 * DAY + SECOND
    assert await loop.tick() == 1  # assess: 7 days before
    moved = T0 + 4 * DAY
    async with uow.begin() as session:
        row = await session.get(ReviewRow, review)
        assert row is not None
        enter(row, ReviewState.GENERATE, POLICIES, moved)  # due 10 days later (the default)
    clock.now = moved
    assert await loop.tick() == 0
    async with uow.begin() as session:
        pending = (await session.scalars(select(TimerRow).where(TimerRow.fired_at.is_(None)))).all()
    assert {(t.phase, t.kind, t.before_s, t.level) for t in pending} == {
        ("generate", "reminder", 7 * 86_400, None),
        ("generate", "reminder", 86_400, None),
        ("generate", "escalation", None, 1),
        ("generate", "escalation", None, 2),
        ("generate", "escalation", None, 3),
    }
    clock.now = moved + 3 * DAY + SECOND
    assert await loop.tick() == 1  # generate: 7 days before
    for old in (T0 + 9 * DAY + SECOND, T0 + 10 * DAY + SECOND, T0 + 12 * DAY + SECOND):
        clock.now = old  # the old phase's "1 day before", due date and first level pass unnoticed
        assert await loop.tick() == 0
    clock.now = moved + 10 * DAY + 2 * DAY + SECOND
    assert await loop.tick() == 3  # generate: 1 day before, overdue, escalated to the manager
    events = await _events(uow, review)
    reminders = [(d["phase"], d["before_s"]) for t, d in events if t == "review.reminder"]
    assert reminders == [("assess", 7 * 86_400), ("generate", 7 * 86_400), ("generate", 86_400)]
    assert [d["phase"] for t, d in events if t == "review.overdue"] == ["generate"]
    assert [(d["phase"], d["level"]) for t, d in events if t == "review.escalated"] == [("generate", 1)]


async def test_one_tick_arms_a_burst_of_new_reviews_larger_than_a_batch(uow: UnitOfWork, settings: Settings) -> None:
    # The engine opens reviews far faster than one batch per tick (the bench: about 200 a second), so a tick arms
    # every review waiting, a batch per transaction, and each review's timers are planned once.
    await _people(uow)
    reviews = [await _review(uow) for _ in range(BATCH * 2 + 1)]
    loop = _loop(uow, settings, Clock())
    assert await loop.tick() == 0
    async with uow.begin() as session:
        unarmed = await session.scalar(select(func.count()).where(ReviewRow.timers_armed.is_(False)))
        planned = (await session.execute(select(TimerRow.review_id, func.count()).group_by(TimerRow.review_id))).all()
    assert unarmed == 0
    assert {review: count for review, count in planned} == dict.fromkeys(reviews, 5)  # 2 reminders, 3 levels


async def test_arming_new_reviews_marks_them_in_one_statement_per_table_and_cancels_nothing(
    settings: Settings, database_url: str
) -> None:
    # At a burst of new reviews the marks were one UPDATE per review, flushed by the ORM as an executemany that
    # PostgreSQL runs row by row (the bench: 36,614 executions for as many reviews); now one per table and batch.
    # And reviews still in the phase they opened in have no timers to cancel: no DELETE (the bench: 34-78 ms a
    # batch while the timer table had no statistics).
    engine = create_engine(database_url)
    uow = UnitOfWork(engine)
    executed: Counter[str] = Counter()  # executions of each statement: an executemany of n rows is n of them

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        executed[" ".join(statement.split())] += len(parameters) if many else 1

    try:
        await _people(uow)
        for n in range(30):
            await _review(uow, recipients=(f"r{n}@example.org",))
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        assert await _loop(uow, settings, Clock()).tick() == 0
        async with uow.begin() as session:
            unarmed = await session.scalar(select(func.count()).where(ReviewRow.timers_armed.is_(False)))
            acks = await session.scalar(select(func.count()).where(AcknowledgementRow.timers_armed.is_(False)))
            planned = await session.scalar(select(func.count()).select_from(TimerRow))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        await engine.dispose()
    assert unarmed == acks == 0
    assert planned == 30 * (5 + 2)  # each review: 2 reminders, 3 escalation levels; its acknowledgement: 2 reminders
    marks = Counter[str]()
    for statement, times in executed.items():
        if statement.startswith("UPDATE") and "SET timers_armed" in statement:
            marks[statement.split()[1]] += times
    assert marks == {"engine_reviews": 1, "engine_acknowledgements": 1}
    assert [statement for statement in executed if statement.startswith("DELETE FROM engine_timers")] == []


async def test_two_engine_replicas_ticking_together_send_each_notice_once(
    uow: UnitOfWork, settings: Settings, database_url: str
) -> None:
    await _people(uow)
    reviews = [await _review(uow, recipients=(f"r{n}@example.org",)) for n in range(60)]
    other_engine = create_engine(database_url)
    clock = Clock()
    replicas = [_loop(uow, settings, clock), _loop(UnitOfWork(other_engine), settings, clock)]
    try:
        due = T0 + 10 * DAY
        moments = [T0, due - 7 * DAY, due - DAY, due, due + 2 * DAY, due + 4 * DAY, due + 7 * DAY, due + 30 * DAY]
        fired = 0
        for moment in moments:
            clock.now = moment
            for _ in range(4):  # 60 reviews and 60 acknowledgements: more than one batch of 100 at some moments
                fired += sum(await asyncio.gather(*(replica.tick() for replica in replicas)))
    finally:
        await other_engine.dispose()
    events = await _events(uow)
    per_review = Counter(t for t, _ in events)
    n = len(reviews)
    # each review: 2 phase + 2 acknowledgement reminders, overdue, acknowledgement due, chain of 4 (3 levels)
    assert per_review == {
        "review.reminder": 4 * n,
        "review.overdue": n,
        "document.acknowledgement_due": n,
        "review.escalated": 4 * n,
    }
    assert fired == len(events) == 10 * n
    distinct = {
        (t, d["review_id"], d.get("about"), d.get("before_s"), d.get("level"), d.get("target")) for t, d in events
    }
    assert len(distinct) == len(events)  # nothing twice
    async with uow.begin() as session:
        assert await session.scalar(select(func.count()).where(TimerRow.fired_at.is_(None))) == 0


async def test_an_answered_acknowledgement_gets_no_more_reminders_nor_its_due_notice(
    uow: UnitOfWork, settings: Settings
) -> None:
    """Declining or asking an exception answers the campaign: reminding that person (or counting them overdue) would
    nag someone who has answered. One who has not answered is still reminded, as a control."""
    await _people(uow)
    recipients = ("quiet@example.org", "decliner@example.org", "excused@example.org")
    review = await _review(uow, recipients=recipients)
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()  # arms: each recipient's reminders planned
    clock.now = T0 + DAY
    async with uow.begin() as session:
        acks = {a.recipient: a for a in (await session.scalars(select(AcknowledgementRow))).all()}
        acks["decliner@example.org"].decision = "declined"
        acks["excused@example.org"].decision = "exception_requested"
        for ack in acks.values():
            ack.decided_at = clock.now if ack.decision else None
    due = T0 + 10 * DAY
    for moment in (due - 7 * DAY, due - DAY, due, due + DAY):
        await _around(loop, clock, moment)
    told = Counter(
        data["recipient"]
        for type_, data in await _events(uow, review)
        if type_ in {"review.reminder", "document.acknowledgement_due"} and data.get("about") != "phase"
    )
    assert told == {"quiet@example.org": 3}  # 7 days, 1 day, due


async def test_a_version_a_later_one_replaced_gets_no_more_reminders_nor_its_due_notice(
    uow: UnitOfWork, settings: Settings
) -> None:
    """Once version 2 is published, version 1 is superseded: reminding its recipients to acknowledge it would send
    them to a version they can no longer acknowledge (its link is refused, My work no longer lists it)."""
    await _people(uow)
    review = await _review(uow, recipients=("cfo@example.org",))
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()  # arms version 1's reminders
    clock.now = T0 + DAY
    async with uow.begin() as session:
        version = await session.scalar(select(DocumentVersionRow))
        assert version is not None
        version.status = "superseded"
    due = T0 + 10 * DAY
    for moment in (due - 7 * DAY, due - DAY, due, due + DAY):
        await _around(loop, clock, moment)
    told = [
        data
        for type_, data in await _events(uow, review)
        if type_ in {"review.reminder", "document.acknowledgement_due"} and data.get("about") != "phase"
    ]
    assert told == []
