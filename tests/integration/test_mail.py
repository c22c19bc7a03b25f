"""The e-mail channel against a real SMTP server (aiosmtpd on loopback): a published document version reaches each
recipient once, as a multipart text + HTML message with the summary, the due date and the link; a mail server that
refuses (451, then 550) or is down (connection refused) delays the mails but loses and duplicates none, with one
`Message-ID` per notification across attempts, and every failure in the attempts log. Also the campaign route."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from services.contracts.reviews import ReviewEventType
from services.core.db import UnitOfWork
from services.core.identity.model import Role
from services.core.kafka import Message
from services.core.settings import Settings
from services.notifier.flows import plan_deliveries
from services.notifier.mail import MailConfig
from services.notifier.mailing import MailWorker
from services.notifier.persistence import AttemptRow, Channel, DeliveryRow
from services.notifier.retries import AttemptResult, DeliveryStatus
from services.notifier.smtp import MailServer as SmtpServer
from services.strategy_engine.persistence import ReviewRow
from tests.support.console import signed_in
from tests.support.events import accepted, feed_engine, review_event, tuned
from tests.support.harness import Harness, smits
from tests.support.smtp import MailServer, Received, mail_server
from tests.support.waiting import eventually

RECIPIENTS = ["ana@example.org", "ben@example.org", "cleo@example.org"]
TITLE = "IT strategy 2027 & beyond"
SUMMARY = "Cloud first: <b>all</b> new services on the EU region & the data centre closes in 2028."
PUBLIC_URL = "https://smits.example.org"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def mail_settings(settings: Settings, server: MailServer, **more: Any) -> Settings:
    return tuned(settings, **{"public_url": PUBLIC_URL, **server.settings, **more})


async def open_review(app: Harness, settings: Settings) -> str:
    await feed_engine(
        settings,
        [
            accepted(
                "regulation_update",
                "r-mail",
                at=datetime.now(UTC),
                regulation_id="DORA",
                title="DORA",
                jurisdiction="EU",
                issuing_body="EP",
                change_type="new",
                effective_date="2027-06-01",
            )
        ],
    )
    await eventually(lambda: app.count(ReviewRow), lambda n: n == 1, what="review opened")
    return str((await app.api.get("/v1/reviews")).json()["items"][0]["id"])


async def publish(app: Harness, review: str, *, due_days: float = 10) -> httpx.Response:
    response = await app.api.post(
        f"/v1/reviews/{review}/documents",
        json={
            "kind": "strategy_plan",
            "title": TITLE,
            "summary": SUMMARY,
            "publish": True,
            "certified_by": "cio",
            "ack_due_days": due_days,
            "distribution": [{"name": name} for name in RECIPIENTS],
        },
    )
    assert response.status_code == 201, response.text
    return response


async def email_deliveries(app: Harness) -> list[DeliveryRow]:
    async with app.runtime.uow.begin() as session:
        query = select(DeliveryRow).where(DeliveryRow.channel == "email").order_by(DeliveryRow.recipient)
        return list((await session.scalars(query)).all())


async def attempts(app: Harness) -> dict[str, list[AttemptRow]]:
    """Attempts per recipient, in order."""
    async with app.runtime.uow.begin() as session:
        rows = (
            await session.execute(
                select(DeliveryRow.recipient, AttemptRow)
                .join(AttemptRow, AttemptRow.delivery_id == DeliveryRow.id)
                .where(DeliveryRow.channel == "email")
                .order_by(AttemptRow.id)
            )
        ).all()
    found: dict[str, list[AttemptRow]] = {}
    for recipient, attempt in rows:
        found.setdefault(recipient or "", []).append(attempt)
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


async def test_a_published_version_mails_each_recipient_once_with_summary_due_date_and_link(
    settings: Settings,
) -> None:
    with mail_server() as server:
        async with smits(mail_settings(settings, server), ["engine", "notifier"]) as app:
            review = await open_review(app, settings)
            version = (await publish(app, review)).json()
            document = version["document_id"]
            due = datetime.fromisoformat(version["recipients"][0]["due_at"])
            received = await eventually(lambda: _accepted(server), lambda got: len(got) >= 3, what="three mails")
            await eventually(
                lambda: email_deliveries(app), lambda rows: all(r.status == "delivered" for r in rows), what="recorded"
            )
            assert len(server.accepted) == 3
            assert sorted(r for got in received for r in got.recipients) == RECIPIENTS
            deliveries = {row.recipient: row for row in await email_deliveries(app)}
            for got in received:
                message = got.message
                [recipient] = got.recipients
                assert message["To"] == recipient
                assert message["From"] == "smits <smits@example.org>"
                assert message["Subject"] == f"Please acknowledge: {TITLE}, version 1"
                assert message["Message-ID"] == f"<{deliveries[recipient].id.hex}.smits@example.org>"
                assert message.is_multipart()
                assert message.get_content_type() == "multipart/alternative"
                text, html = parts(message)
                link = f"{PUBLIC_URL}/documents/{document}"
                assert SUMMARY in text
                assert link in text
                assert due.strftime("%d %B %Y, %H:%M UTC") in text
                # The HTML is autoescaped: the summary's markup is shown, never interpreted.
                assert "Cloud first: &lt;b&gt;all&lt;/b&gt; new services on the EU region &amp; the data" in html
                assert "<b>all</b>" not in html
                assert f'<a href="{link}">' in html
                assert "IT strategy 2027 &amp; beyond" in html

            # The campaign: three pending; one recipient acknowledges (from the link, signed in).
            campaign = await app.api.get(f"/v1/documents/{document}/versions/1/campaign")
            assert campaign.status_code == 200, campaign.text
            assert {k: campaign.json()[k] for k in ("total", "acknowledged", "pending", "overdue")} == {
                "total": 3,
                "acknowledged": 0,
                "pending": 3,
                "overdue": 0,
            }
            ana = await app.person(RECIPIENTS[0], Role.VIEWER)
            assert (await ana.post(f"/v1/documents/{document}/acknowledgements", json={})).status_code == 200
            after = (await ana.get(f"/v1/documents/{document}/versions/1/campaign")).json()
            assert (after["acknowledged"], after["pending"]) == (1, 2)
            states = {r["recipient"]: r["state"] for r in after["recipients"]}
            assert states == {RECIPIENTS[0]: "acknowledged", RECIPIENTS[1]: "pending", RECIPIENTS[2]: "pending"}
            assert (await app.api.get(f"/v1/documents/{document}/versions/2/campaign")).status_code == 404
            assert (await app.api.get(f"/v1/documents/{uuid.uuid4()}/versions/1/campaign")).status_code == 404
            listed = (await app.api.get("/v1/deliveries", params={"channel": "email"})).json()
            assert {d["recipient"] for d in listed} == set(RECIPIENTS)
            assert {(d["channel"], d["subscription_id"], d["status"]) for d in listed} == {("email", None, "delivered")}


async def test_a_refusing_or_absent_mail_server_delays_mail_but_loses_and_duplicates_none(settings: Settings) -> None:
    with mail_server() as server:
        server.refuse(451)  # at DATA: the server read the whole message each time, then said "later"
        tuned_settings = mail_settings(settings, server, delivery_retry_schedule=(0.0,) + (0.2,) * 60)
        async with smits(tuned_settings, ["engine", "notifier"]) as app:
            await publish(app, await open_review(app, settings))

            async def saw(code: int | None) -> None:
                def each_has(log: dict[str, list[AttemptRow]]) -> bool:
                    return len(log) == 3 and all(any(a.status_code == code for a in tried) for tried in log.values())

                await eventually(lambda: attempts(app), each_has, what=f"an attempt answered {code} per mail")

            await saw(451)
            server.refuse(550, at="rcpt")
            await saw(550)
            server.stop()
            await saw(None)
            assert server.accepted == []
            server.refuse(None)
            server.start()
            await eventually(
                lambda: email_deliveries(app), lambda rows: all(r.status == "delivered" for r in rows), what="sent"
            )
            log = await attempts(app)
            deliveries = {row.recipient: row for row in await email_deliveries(app)}

    got = server.accepted
    assert sorted(r for mail in got for r in mail.recipients) == RECIPIENTS  # none lost, none twice
    for mail in got:
        [recipient] = mail.recipients
        expected = f"<{deliveries[recipient].id.hex}.smits@example.org>"
        assert mail.message["Message-ID"] == expected
        refused_before = [r for r in server.handler.refused if r.recipients == [recipient]]
        assert refused_before, "the 451 phase read the message"
        assert {r.message["Message-ID"] for r in refused_before} == {expected}  # the same on every attempt
        assert {r.raw for r in refused_before} == {mail.raw}  # and the very same bytes
        tried = log[recipient]
        codes = [a.status_code for a in tried]
        assert codes[-1] == 250
        assert codes.count(250) == 1
        assert {451, 550, None} <= set(codes[:-1])
        assert deliveries[recipient].attempt_count == len(tried)
        refused = [a for a in tried if a.status_code is None]
        assert all(a.error and ("Connect" in a.error or "refused" in a.error.lower()) for a in refused), refused
        assert any(a.error and "mailbox unavailable" in a.error for a in tried if a.status_code == 550)


async def test_without_a_mail_server_no_mail_is_planned_and_with_one_a_replay_plans_none_again(
    settings: Settings, uow: Any
) -> None:
    event = review_event(uuid.uuid4(), 1, type_=ReviewEventType.DOCUMENT_PUBLISHED)
    data = {
        "document_id": str(uuid.uuid4()),
        "version": 1,
        "title": TITLE,
        "summary": SUMMARY,
        "recipients": [*RECIPIENTS, "ANA@example.org", "not an address"],
        "acknowledge_by": NOW.isoformat(),
    }
    event = event.model_copy(update={"data": data})
    batch = [
        Message(
            topic="t.reviews.events",
            partition=0,
            offset=0,
            key=None,
            value=orjson.dumps(event.model_dump(mode="json")),
            headers=(),
            timestamp_ms=0,
        )
    ]
    config = MailConfig(sender="smits@example.org", public_url=PUBLIC_URL)
    async with uow.begin() as session:
        assert await plan_deliveries(session, batch, now=NOW) == 0
    async with uow.begin() as session:
        assert await plan_deliveries(session, batch, now=NOW, mail=config) == 3  # each address once
    async with uow.begin() as session:
        assert await plan_deliveries(session, batch, now=NOW, mail=config) == 0  # a replay
        rows = list((await session.scalars(select(DeliveryRow))).all())
    assert sorted(row.recipient or "" for row in rows) == RECIPIENTS
    assert {(row.channel, row.subscription_id, row.ready) for row in rows} == {("email", None, True)}


async def _accepted(server: MailServer) -> list[Received]:
    return server.accepted


async def test_a_failed_mail_is_resent_with_the_same_message(settings: Settings) -> None:
    with mail_server() as server:
        server.refuse(550, at="data")
        async with smits(
            mail_settings(settings, server, delivery_retry_schedule=(0.0,)), ["engine", "notifier"]
        ) as app:
            await publish(app, await open_review(app, settings))
            failed = await eventually(
                lambda: email_deliveries(app),
                lambda rows: len(rows) == 3 and all(r.status == "failed" for r in rows),
                what="every mail failed (one attempt allowed)",
            )
            refused = {r.recipients[0]: r.raw for r in server.handler.refused}
            server.refuse(None)
            for row in failed:
                resent = await app.api.post(f"/v1/deliveries/{row.id}/resend")
                assert resent.status_code == 202, resent.text
                assert (resent.json()["channel"], resent.json()["status"]) == ("email", "pending")
            await eventually(
                lambda: email_deliveries(app), lambda rows: all(r.status == "delivered" for r in rows), what="resent"
            )
            again = await app.api.post(f"/v1/deliveries/{failed[0].id}/resend")
            assert again.status_code == 409  # only failed ones are resent
    assert {r.recipients[0]: r.raw for r in server.accepted} == refused  # the very same bytes, Message-ID included


async def test_an_e_mail_whose_lease_ran_out_is_not_claimed_again_by_its_own_worker(uow: UnitOfWork) -> None:
    """As for webhooks: a lease that ran out while the mail server is still answering keeps the e-mail with the
    worker that is sending it; a second claim would hand the mail server the same message twice."""
    settings = Settings(delivery_timeout_s=1.0, delivery_lease_s=2.0, delivery_subscription_concurrency=8)
    clock = [datetime.now(UTC)]
    sent: list[str] = []
    all_sent, release = asyncio.Event(), asyncio.Event()

    async def sender(server: SmtpServer, *, recipient: str, message: str) -> AttemptResult:
        sent.append(recipient)
        if len(sent) == 3:
            all_sent.set()
        await release.wait()
        return AttemptResult(status_code=250, duration_ms=1, response=None, error=None, retry_after=None)

    async with uow.begin() as session:
        for n in range(3):
            session.add(
                DeliveryRow(
                    msg_id=f"mail_{n}",
                    subscription_id=None,
                    channel=Channel.EMAIL,
                    recipient=f"p{n}@example.org",
                    event_type="review.document_published",
                    review_id=None,
                    sequence=n,
                    body="Subject: x\r\n\r\nx",
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=clock[0] - timedelta(seconds=1),
                    created_at=clock[0],
                )
            )
    server = SmtpServer.of(settings.model_copy(update={"smtp_host": "127.0.0.1", "mail_from": "smits@example.org"}))
    assert server is not None
    worker = MailWorker(uow=uow, settings=settings, server=server, clock=lambda: clock[0], sender=sender)
    await worker.dispatch()
    await asyncio.wait_for(all_sent.wait(), 10)
    clock[0] += timedelta(seconds=10)  # every lease has run out; the sends are still in flight
    await worker.dispatch()
    await asyncio.sleep(0.2)
    assert sorted(sent) == [f"p{n}@example.org" for n in range(3)], "a held e-mail was sent twice"
    release.set()
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)
    async with uow.begin() as session:
        rows = (await session.scalars(select(DeliveryRow))).all()
    assert sorted((row.status, row.attempt_count) for row in rows) == [(DeliveryStatus.DELIVERED, 1)] * 3


async def test_the_console_lists_failed_mails_with_their_smtp_replies_and_resends_one(settings: Settings) -> None:
    with mail_server() as server:
        server.refuse(550, at="data")
        # Signed in over plain http: a public https address would mark the session cookie Secure.
        tuned = mail_settings(settings, server, delivery_retry_schedule=(0.0,), public_url="http://127.0.0.1:8000")
        async with smits(tuned, ["engine", "notifier", "console"]) as app:
            await publish(app, await open_review(app, settings))
            failed = await eventually(
                lambda: email_deliveries(app),
                lambda rows: len(rows) == 3 and all(r.status == "failed" for r in rows),
                what="every mail failed (one attempt allowed)",
            )
            async with signed_in(app, "ada@corp.example", Role.ADMIN) as browser:
                listed = html.unescape((await browser.get("/mail?status=failed")).text)
                shown = await browser.get(f"/mail/{failed[0].id}")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
                assert csrf is not None, (shown.status_code, shown.headers, listed[:2000])
                server.refuse(None)
                resent = await browser.post(f"/mail/{failed[0].id}/resend", data={"csrf_token": csrf.group(1)})
                assert resent.status_code == 303, resent.text
                after = html.unescape((await browser.get(resent.headers["location"])).text)
                webhook = await browser.get(f"/mail/{uuid.uuid4()}")
            await eventually(
                lambda: email_deliveries(app),
                lambda rows: sum(r.status == "delivered" for r in rows) == 1,
                what="the resent mail delivered",
            )
    for row in failed:
        assert row.recipient is not None
        assert row.recipient in listed
    assert "550" in html.unescape(shown.text)
    assert "(refused)" in shown.text
    assert "Resent:" in after
    assert webhook.status_code == 404
