"""Person notices by preference, against a real SMTP server (aiosmtpd on loopback) with an injected clock: twenty
reminders in a day become one digest mail listing all twenty, planned once however often and by however many
workers the digest is ticked; "your approval is needed" goes at once; a notice inside someone's quiet hours waits
for their end; `off` sends nothing. Also `GET/PUT /v1/me/preferences`: validation (Hypothesis) and each person
reads and writes only their own."""

from __future__ import annotations

import asyncio
import html
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.db import UnitOfWork
from services.core.identity import store
from services.core.identity.audit import AuditRow
from services.core.identity.model import Role
from services.core.kafka import Message
from services.core.settings import Settings
from services.notifier import digests
from services.notifier.digests import DigestWorker
from services.notifier.flows import plan_deliveries
from services.notifier.mail import MailConfig
from services.notifier.mailing import MailWorker
from services.notifier.notices import compose_digest
from services.notifier.persistence import DeliveryRow, DigestItemRow, PreferenceRow
from services.notifier.preferences import time_zones
from services.notifier.smtp import MailServer as SmtpServer
from tests.integration.test_console_pages1 import WITH_CONSOLE, csrf_of, page
from tests.support.console import signed_in
from tests.support.events import review_event
from tests.support.harness import smits
from tests.support.smtp import MailServer, Received, mail_server

PUBLIC_URL = "https://smits.example.org"
CONFIG = MailConfig(sender="smits@example.org", public_url=PUBLIC_URL)
ANA, BEN = "ana@example.org", "ben@example.org"
MORNING = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # before the default digest hour (08:00 UTC)


def batch(*events: ReviewEventV1) -> list[Message]:
    return [
        Message(
            topic="t.reviews.events",
            partition=0,
            offset=n,
            key=None,
            value=orjson.dumps(event.model_dump(mode="json")),
            headers=(),
            timestamp_ms=0,
        )
        for n, event in enumerate(events)
    ]


def event(type_: ReviewEventType, data: dict[str, Any], *, review: uuid.UUID | None = None) -> ReviewEventV1:
    made = review_event(review or uuid.uuid4(), 1, type_=type_)
    return made.model_copy(update={"data": data})


def reminder(recipient: str, n: int) -> ReviewEventV1:
    return event(
        ReviewEventType.REMINDER,
        {
            "about": "phase",
            "recipient": recipient,
            "due_at": "2026-12-01T09:00:00+00:00",
            "before_s": n,
            "phase": "assess",
        },
    )


async def plan(uow: UnitOfWork, *events: ReviewEventV1, at: datetime) -> int:
    async with uow.begin() as session:
        return await plan_deliveries(session, batch(*events), now=at, mail=CONFIG)


async def mails(uow: UnitOfWork) -> list[DeliveryRow]:
    async with uow.begin() as session:
        query = select(DeliveryRow).where(DeliveryRow.channel == "email").order_by(DeliveryRow.created_at)
        return list((await session.scalars(query)).all())


def mail_worker(uow: UnitOfWork, server: MailServer, clock: list[datetime]) -> MailWorker:
    settings = Settings(**server.settings)
    smtp = SmtpServer.of(settings)
    assert smtp is not None
    return MailWorker(uow=uow, settings=settings, server=smtp, clock=lambda: clock[0])


async def send_due(worker: MailWorker) -> None:
    """One claim of what is due at the worker's clock, sent and recorded."""
    for claim in await worker.claim(50):
        await worker.deliver(claim)


def text_of(got: Received) -> str:
    body = got.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def person(uow: UnitOfWork, email: str, **preferences: Any) -> None:
    async with uow.begin() as session:
        row = await store.create_person(session, email=email, name=email, roles=[Role.VIEWER], now=MORNING)
        if preferences:
            session.add(
                PreferenceRow(
                    principal_id=row.id,
                    time_zone=preferences.get("time_zone", "UTC"),
                    quiet_start=preferences.get("quiet_start"),
                    quiet_end=preferences.get("quiet_end"),
                    digest_hour=preferences.get("digest_hour", 8),
                    modes={"email": preferences.get("modes", {})},
                    updated_at=MORNING,
                )
            )


async def test_twenty_reminders_in_a_day_become_one_digest_mail_listing_all_twenty(uow: UnitOfWork) -> None:
    reminders = [reminder(ANA, n) for n in range(20)]
    for n, one in enumerate(reminders):
        assert await plan(uow, one, at=MORNING + timedelta(minutes=n)) == 1
    assert await plan(uow, *reminders, at=MORNING + timedelta(hours=1)) == 0  # a replay plans nothing
    assert await mails(uow) == []  # reminders wait for the digest by default

    clock = [MORNING + timedelta(hours=1)]
    workers = [DigestWorker(uow=uow, mail=CONFIG, clock=lambda: clock[0]) for _ in range(2)]
    assert await workers[0].tick() == 0  # 07:00 UTC: before the digest hour
    clock[0] = MORNING + timedelta(hours=2, minutes=5)
    ticks = await asyncio.gather(*(worker.tick() for worker in workers for _ in range(5)))
    assert sum(ticks) == 1  # two replicas ticking at once: planned once
    for later in (timedelta(hours=3), timedelta(hours=17)):
        clock[0] = MORNING + later
        assert await workers[1].tick() == 0  # the same local day: not again

    [digest] = await mails(uow)
    assert (digest.recipient, digest.msg_id, digest.event_type) == (ANA, "digest_2026-11-24", "notifier.digest")
    with mail_server() as server:
        await send_due(mail_worker(uow, server, clock))
        [got] = server.accepted
    assert got.recipients == [ANA]
    assert got.message["Subject"] == "smits daily digest, 2026-11-24: 20 notices"
    assert got.message["Message-ID"] == f"<{digest.id.hex}.smits@example.org>"
    text = text_of(got)
    assert text.count("Reminder: the assess phase of a ") == 20
    assert all(f"{PUBLIC_URL}/reviews/{one.review_id}" in text for one in reminders)
    async with uow.begin() as session:
        items = (await session.scalars(select(DigestItemRow))).all()
    assert len(items) == 20
    assert {item.digest_id for item in items} == {digest.id}

    # A reminder after today's digest waits for tomorrow's.
    late = reminder(ANA, 99)
    assert await plan(uow, late, at=MORNING + timedelta(hours=18)) == 1
    assert await workers[0].tick() == 0
    clock[0] = MORNING + timedelta(days=1, hours=2)
    assert await workers[0].tick() == 1
    assert [m.msg_id for m in await mails(uow)] == ["digest_2026-11-24", "digest_2026-11-25"]


async def test_approval_needed_is_mailed_at_once_to_each_approver(uow: UnitOfWork) -> None:
    moved = event(
        ReviewEventType.TRANSITIONED,
        {
            "from": "generate",
            "to": "approval",
            "due_at": "2026-12-01T09:00:00+00:00",
            "approvers": [ANA, "BEN@example.org"],
        },
    )
    clock = [MORNING]
    assert await plan(uow, moved, at=MORNING) == 2
    assert await plan(uow, moved, at=MORNING) == 0
    not_approval = event(ReviewEventType.TRANSITIONED, {"from": "triage", "to": "assess", "approvers": [ANA]})
    assert await plan(uow, not_approval, at=MORNING) == 0
    with mail_server() as server:
        await send_due(mail_worker(uow, server, clock))
        got = sorted(server.accepted, key=lambda r: r.recipients)
    assert [r.recipients for r in got] == [[ANA], [BEN]]
    for mail in got:
        assert mail.message["Subject"].startswith("Your approval is needed: a ")
        html = mail.message.get_body(("html",))
        assert html is not None
        assert f'<a href="{PUBLIC_URL}/reviews/{moved.review_id}">' in str(html.get_content())
        assert "you are named as one of its approvers" in text_of(mail)


async def test_a_restricted_reviews_notice_names_only_ids(uow: UnitOfWork) -> None:
    secret = event(
        ReviewEventType.ESCALATED,
        {"phase": "assess", "owner": BEN, "level": 2, "target": ANA, "days_overdue": 3, "due_at": MORNING.isoformat()},
    ).model_copy(update={"restricted": True, "scope": "Project Falcon", "category": "merger_acquisition"})
    assert await plan(uow, secret, at=MORNING) == 1
    with mail_server() as server:
        await send_due(mail_worker(uow, server, [MORNING]))
        [got] = server.accepted
    text = text_of(got)
    assert got.message["Subject"] == "Escalation level 2: a need-to-know review is overdue by 3 days"
    assert "Falcon" not in got.raw.decode()
    assert "merger" not in got.raw.decode()
    assert BEN not in text
    assert f"{PUBLIC_URL}/reviews/{secret.review_id}" in text


async def test_a_notice_inside_quiet_hours_waits_for_their_end(uow: UnitOfWork) -> None:
    # Berlin is UTC+1 in November: quiet 22:00-07:00 local is 21:00-06:00 UTC.
    await person(uow, ANA, time_zone="Europe/Berlin", quiet_start="22:00", quiet_end="07:00")
    late_evening = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    overdue = event(ReviewEventType.OVERDUE, {"phase": "assess", "due_at": "2026-11-24T20:00:00+00:00", "owner": ANA})
    escalated = event(ReviewEventType.ESCALATED, {"phase": "assess", "level": 1, "target": ANA, "days_overdue": 1})
    assert await plan(uow, overdue, escalated, at=late_evening) == 2  # the reminder to the digest, the escalation held
    [held] = await mails(uow)
    assert held.next_attempt_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    clock = [late_evening]
    with mail_server() as server:
        worker = mail_worker(uow, server, clock)
        for minutes in (0, 60, 400):
            clock[0] = late_evening + timedelta(minutes=minutes)
            await send_due(worker)
        assert server.accepted == []
        clock[0] = datetime(2026, 11, 25, 6, 0, 1, tzinfo=UTC)
        await send_due(worker)
        [got] = server.accepted
    assert got.message["Subject"] == "Escalation level 1: a high regulation update review (bu-1) is overdue by 1 day"
    # Outside quiet hours: at once.
    daytime = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert await plan(uow, event(ReviewEventType.ESCALATED, {"level": 2, "target": ANA}), at=daytime) == 1
    assert (await mails(uow))[-1].next_attempt_at == daytime


async def test_off_sends_nothing(uow: UnitOfWork) -> None:
    await person(uow, ANA, modes={"reminder": "off", "escalation": "off"})
    due = event(
        ReviewEventType.ACKNOWLEDGEMENT_DUE,
        {
            "document_id": str(uuid.uuid4()),
            "version": 2,
            "kind": "policy",
            "recipient": ANA,
            "due_at": MORNING.isoformat(),
        },
    )
    escalated = event(ReviewEventType.ESCALATED, {"level": 1, "target": ANA})
    assert await plan(uow, reminder(ANA, 1), due, escalated, at=MORNING) == 0
    assert await plan(uow, reminder(BEN, 1), at=MORNING) == 1  # ben keeps the default (his digest)
    async with uow.begin() as session:
        items = (await session.scalars(select(DigestItemRow))).all()
    assert [item.recipient for item in items] == [BEN]
    assert await mails(uow) == []
    digests = DigestWorker(uow=uow, mail=CONFIG, clock=lambda: MORNING + timedelta(hours=3))
    assert await digests.tick() == 1
    assert [m.recipient for m in await mails(uow)] == [BEN]


ZONES = sorted(time_zones())
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=70)
"""Any text but NUL (which every route refuses before validation, with a 400)."""
CLOCKS = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    TEXT.map(lambda text: text[:8]),
    st.sampled_from(["24:00", "7:00", "07:60", "0700", "07:00:00", " 07:00", "-1:00"]),
)


async def test_preferences_api_validates_and_is_each_persons_own(settings: Settings) -> None:
    async with smits(settings, ["notifier"]) as app:
        ana = await app.person(ANA, Role.VIEWER)
        ben = await app.person(BEN, Role.APPROVER)
        defaults = (await ana.get("/v1/me/preferences")).json()
        assert defaults == {
            "time_zone": "UTC",
            "quiet_hours": None,
            "digest_hour": 8,
            "channels": {
                "email": {
                    "approval_needed": "immediate",
                    "document_published": "immediate",
                    "reminder": "digest",
                    "escalation": "immediate",
                }
            },
            "updated_at": None,
        }
        mine = {
            "time_zone": "Europe/Berlin",
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "digest_hour": 7,
            "channels": {"email": {"reminder": "off", "approval_needed": "digest"}},
        }
        saved = await ana.put("/v1/me/preferences", json=mine)
        assert saved.status_code == 200, saved.text
        assert saved.json()["channels"]["email"]["escalation"] == "immediate"  # left out: its default
        assert (await ana.get("/v1/me/preferences")).json() == saved.json()
        assert (await ben.get("/v1/me/preferences")).json() == defaults  # ben reads his own, not ana's
        assert (await ben.put("/v1/me/preferences", json={"digest_hour": 18})).status_code == 200
        assert (await ana.get("/v1/me/preferences")).json() == saved.json()  # and writes only his own
        assert (await ana.put("/v1/users/x/preferences", json=mine)).status_code in (404, 405)

        off = await ana.put("/v1/me/preferences", json={"channels": {"email": {"approval_needed": "off"}}})
        assert off.status_code == 422
        assert off.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in off.json()["errors"]] == ["channels.email.approval_needed"]
        for bad, field in (
            ({"time_zone": "Mars/Olympus"}, "time_zone"),
            ({"time_zone": "../../etc/passwd"}, "time_zone"),
            ({"digest_hour": 24}, "digest_hour"),
            ({"digest_hour": "8"}, "digest_hour"),
            ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "quiet_hours"),
            ({"channels": {"chat": {}}}, "channels.chat"),
            ({"colour": "blue"}, "colour"),
        ):
            refused = await ana.put("/v1/me/preferences", json=bad)
            assert refused.status_code == 422, bad
            assert refused.json()["errors"][0]["field"] == field, refused.json()

        @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(zone=st.one_of(st.sampled_from(ZONES), TEXT), start=CLOCKS, end=CLOCKS)
        def check(zone: str, start: str, end: str) -> None:
            body = {"time_zone": zone, "quiet_hours": {"start": start, "end": end}}
            answer = asyncio.run_coroutine_threadsafe(ana.put("/v1/me/preferences", json=body), loop).result()
            fine = zone in time_zones() and all(_clock(c) for c in (start, end)) and start != end
            assert answer.status_code == (200 if fine else 422), (body, answer.text)
            if fine:
                assert answer.json()["quiet_hours"] == {"start": start, "end": end}
                assert answer.json()["time_zone"] == zone
            else:
                assert answer.headers["content-type"].startswith("application/problem+json")

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(check)

        async with app.runtime.uow.begin() as session:
            query = select(AuditRow.principal, AuditRow.target).where(AuditRow.action == "preferences.update")
            audited = (await session.execute(query)).all()
        assert {principal for principal, _ in audited} == {ANA, BEN}
        assert all(target.startswith("principal:") for _, target in audited)


def _clock(text: str) -> bool:
    hours, colon, minutes = text[:2], text[2:3], text[3:]
    if not (len(text) == 5 and text.isascii() and colon == ":" and hours.isdigit() and minutes.isdigit()):
        return False
    return int(hours) < 24 and int(minutes) < 60


async def test_the_console_preferences_page_saves_and_shows_errors_beside_fields(settings: Settings) -> None:
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, ANA, Role.VIEWER) as browser:
        assert 'href="/preferences"' in await page(browser, "/")
        form = await page(browser, "/preferences")
        assert 'value="UTC"' in form
        fields = {
            "csrf_token": csrf_of(form),
            "time_zone": "Mars/Olympus",
            "quiet_start": "22:00",
            "quiet_end": "25:00",
            "digest_hour": "7",
            "channels.email.approval_needed": "immediate",
            "channels.email.document_published": "digest",
            "channels.email.reminder": "off",
            "channels.email.escalation": "immediate",
        }
        refused = await browser.post("/preferences", data=fields)
        assert refused.status_code == 422
        shown = html.unescape(refused.text)
        assert '<p class="field-error" id="time_zone-error">' in shown
        assert "not an IANA time zone name" in shown
        assert '<p class="field-error" id="quiet_hours-error">Give times of day as HH:MM' in shown
        assert 'value="Mars/Olympus"' in shown  # what was typed is kept
        saved = await browser.post("/preferences", data={**fields, "time_zone": "Europe/Berlin", "quiet_end": "07:00"})
        assert saved.status_code == 303
        again = await page(browser, "/preferences")
        assert 'value="Europe/Berlin"' in again
        assert '<option value="off" selected>' in again
        mine = (await browser.get("/v1/me/preferences")).json()
        assert mine["quiet_hours"] == {"start": "22:00", "end": "07:00"}
        assert mine["channels"]["email"]["document_published"] == "digest"


async def test_one_persons_unusable_preferences_or_digest_never_hold_up_the_others(
    uow: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No single bad record may stall the flow for others: a stored time zone this host does not know and a malformed
    quiet hour give that person the defaults (the consumer's batch would otherwise fail and park its partition); a
    digest that cannot be composed for one person is skipped, logged, and everyone else's goes out; and people whose
    digest hour has not come cannot crowd out one whose hour has (the worker pages through everyone waiting)."""
    await person(uow, ANA, time_zone="Mars/Olympus_Mons", quiet_start="25:99", quiet_end="07:00", digest_hour=8)
    await person(uow, BEN)
    moved = event(ReviewEventType.TRANSITIONED, {"from": "generate", "to": "approval", "approvers": [ANA, BEN]})
    assert await plan(uow, moved, at=MORNING) == 2  # both mailed at once, Ana with the defaults
    assert sorted(m.recipient or "" for m in await mails(uow)) == [ANA, BEN]

    late_risers = [f"a{n}@example.org" for n in range(3)]  # sorted before the others; their digest is at 23:00
    for address in late_risers:
        await person(uow, address, digest_hour=23)
    for address in (*late_risers, ANA, BEN, "zoe@example.org"):
        assert await plan(uow, reminder(address, 1), at=MORNING) == 1
    broken = compose_digest

    def compose(lines: Any, **kwargs: Any) -> str:
        if kwargs["recipient"] == BEN:
            raise ValueError("this address cannot be written")
        return broken(lines, **kwargs)

    monkeypatch.setattr(digests, "compose_digest", compose)
    monkeypatch.setattr(digests, "BATCH", 2)
    worker = DigestWorker(uow=uow, mail=CONFIG, clock=lambda: MORNING + timedelta(hours=3))
    assert await worker.tick() == 2  # Ana (defaults: 08:00 UTC) and Zoe; Ben's is logged and skipped
    planned = {m.recipient for m in await mails(uow) if m.event_type == digests.DIGEST_EVENT}
    assert planned == {ANA, "zoe@example.org"}


async def test_a_replay_after_switching_between_immediate_and_digest_plans_nothing_again(uow: UnitOfWork) -> None:
    await person(uow, ANA, modes={"reminder": "digest"})
    once = reminder(ANA, 1)
    assert await plan(uow, once, at=MORNING) == 1  # a digest item
    async with uow.begin() as session:
        row = await session.scalar(select(PreferenceRow))
        assert row is not None
        row.modes = {"email": {"reminder": "immediate"}}
    assert await plan(uow, once, at=MORNING) == 0  # the same batch again: not also mailed
    assert await mails(uow) == []


async def test_in_a_sequence_the_next_approver_is_asked_once_the_previous_approved(uow: UnitOfWork) -> None:
    review = uuid.uuid4()
    into = event(
        ReviewEventType.TRANSITIONED, {"from": "generate", "to": "approval", "approvers": [ANA]}, review=review
    )
    approved = event(
        ReviewEventType.APPROVAL_RECORDED,
        {"version": 1, "approver": ANA, "verdict": "approve", "decision": "pending", "approvers": [BEN]},
        review=review,
    )
    last = event(
        ReviewEventType.APPROVAL_RECORDED,
        {"version": 1, "approver": BEN, "verdict": "approve", "decision": "approved"},
        review=review,
    )
    assert await plan(uow, into, at=MORNING) == 1
    assert await plan(uow, approved, last, at=MORNING) == 1  # Ben, now; nobody after the last verdict
    assert [(m.recipient, m.event_type) for m in await mails(uow)] == [
        (ANA, "review.transitioned"),
        (BEN, "review.approval_recorded"),
    ]
