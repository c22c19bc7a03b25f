"""From the engine's timers to a person's mailbox, with an injected clock and a real SMTP server (aiosmtpd): the
7-day and the 1-day reminder and the due notice of a review phase each reach its owner exactly once, also when the
notifier is handed the same events again (a replayed batch) and when the timer loop ticks again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from services.core.db import UnitOfWork
from services.core.identity import store
from services.core.kafka import Message
from services.core.outbox import decode_headers
from services.core.settings import Settings
from services.notifier.flows import plan_deliveries
from services.notifier.mail import MailConfig
from services.notifier.persistence import PreferenceRow
from services.strategy_engine.persistence import EngineOutboxRow
from tests.integration.test_people_notices import mail_worker, send_due
from tests.integration.test_reminders import DAY, T0, Clock, _around, _loop, _people, _review
from tests.support.smtp import mail_server

CONFIG = MailConfig(sender="smits@example.org", public_url="https://smits.example.org")


async def _engine_events(uow: UnitOfWork, after: int) -> tuple[list[Message], int]:
    """What the engine's outbox holds after row `after`, as the notifier's consumer would receive it."""
    async with uow.begin() as session:
        rows = (await session.scalars(select(EngineOutboxRow).where(EngineOutboxRow.id > after))).all()
    messages = [
        Message(
            topic=row.topic,
            partition=0,
            offset=row.id,
            key=row.key,
            value=row.value,
            headers=tuple(decode_headers(row.headers)),
            timestamp_ms=0,
        )
        for row in rows
    ]
    return messages, max((row.id for row in rows), default=after)


async def test_each_reminder_and_the_due_notice_reach_the_owner_once(uow: UnitOfWork, settings: Settings) -> None:
    await _people(uow)
    async with uow.begin() as session:  # the owner wants reminders at once (the default is the daily digest)
        owner = await store.principal_by_email(session, "owner@example.org")
        assert owner is not None
        session.add(
            PreferenceRow(
                principal_id=owner.id,
                time_zone="UTC",
                quiet_start=None,
                quiet_end=None,
                digest_hour=8,
                modes={"email": {"reminder": "immediate"}},
                updated_at=T0,
            )
        )
    review = await _review(uow, policy="plain", due_in=10 * DAY)
    clock = Clock()
    loop = _loop(uow, settings, clock)
    await loop.tick()  # arms the phase's timers
    due = T0 + 10 * DAY
    seen, handed = 0, []
    with mail_server() as server:
        worker = mail_worker(uow, server, [due + DAY])
        for moment in (due - 7 * DAY, due - DAY, due):
            await _around(loop, clock, moment)  # ticks again and again around each moment
            messages, seen = await _engine_events(uow, seen)
            handed += messages
            async with uow.begin() as session:
                await plan_deliveries(session, messages, now=moment + timedelta(minutes=5), mail=CONFIG)
        async with uow.begin() as session:  # the whole batch again, as after a crash before the offset commit
            assert await plan_deliveries(session, handed, now=due + DAY, mail=CONFIG) == 0
        await send_due(worker)
        await send_due(worker)
        received = [got for got in server.accepted if got.recipients == ["owner@example.org"]]
    subjects = sorted(str(got.message["subject"]).strip() for got in received)  # folded: may start with a space
    assert [subject.split(":")[0] for subject in subjects] == ["Overdue", "Reminder", "Reminder"], subjects
    assert len({got.message["message-id"] for got in received}) == 3
    for got in received:  # each links to the review
        body = got.message.get_body(("plain",))
        assert body is not None
        assert f"/reviews/{review}" in str(body.get_content())
