"""Acknowledgement campaigns end to end, with a real SMTP server (aiosmtpd): a version published to an org unit's
three (enabled) members mails exactly those three, with the change summary, the sign-in link and a signed link;
following the sign-in link signed in acknowledges; the signed link acknowledges once, audited with its method,
and is refused replayed, altered or for a replaced version; a second version tells each person what changed
since the version *they* acknowledged; declines and exception requests show in the campaign and in My work; the
register lists documents with filters; a distribution entry that names nobody is refused."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from sqlalchemy import select

from services.core.identity import passwords, store
from services.core.identity.audit import AuditRow
from services.core.identity.model import Role
from services.core.links import AckLink, sign
from services.core.settings import Settings
from services.strategy_engine.flows import documents as flows_documents
from services.strategy_engine.persistence import TimelineRow
from tests.integration.test_mail import PUBLIC_URL, mail_settings, open_review, parts
from tests.support.harness import ALL, Harness, smits
from tests.support.smtp import MailServer, Received, mail_server
from tests.support.waiting import eventually

PASSWORD = "correct horse battery staple"
ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
OPS = ["ana@example.org", "ben@example.org", "cleo@example.org"]
ANA, BEN, CLEO = OPS
DISABLED = "dora@example.org"
KEY = "campaign-test-signing-key-0123456789abcdef"
S1, S2 = "First plan: cloud first.", "Second plan: the data centre closes in 2028."
SIGNED = re.compile(re.escape(PUBLIC_URL) + r"(/v1/acknowledge-link\?token=[A-Za-z0-9_\-.]+)")


async def people(app: Harness) -> None:
    """Org unit Ops: three enabled members and a disabled one; a sub-unit Ops/Night with no one in it."""
    now = datetime.now(UTC)
    async with app.runtime.uow.begin() as session:
        await store.create_unit(session, name="Ops", parent=None, lead=None, now=now)
        for email in [*OPS, DISABLED]:
            await store.create_person(
                session,
                email=email,
                name=email.split("@")[0],
                roles=[Role.VIEWER],
                org_units=["Ops"],
                password_hash=passwords.hash_password(PASSWORD),
                now=now,
            )
        dora = await store.principal_by_email(session, DISABLED)
        assert dora is not None
        await store.disable(session, dora, now=now)


@asynccontextmanager
async def browser_of(app: Harness, email: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=app.transport, base_url=PUBLIC_URL) as browser:
        answer = await browser.post("/auth/login", data={"email": email, "password": PASSWORD, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield browser


async def publish(app: Harness, review: str, summary: str, distribution: list[dict[str, object]]) -> httpx.Response:
    return await app.api.post(
        f"/v1/reviews/{review}/documents",
        json={
            "kind": "strategy_plan",
            "title": "Ops strategy",
            "summary": summary,
            "publish": True,
            "certified_by": "cio",
            "distribution": distribution,
        },
    )


async def _accepted(server: MailServer) -> list[Received]:
    return list(server.accepted)


def by_recipient(received: list[Received]) -> dict[str, EmailMessage]:
    found: dict[str, EmailMessage] = {}
    for got in received:
        [recipient] = got.recipients
        found[recipient] = got.message
    return found


def signed_path(text: str) -> str:
    found = SIGNED.search(text)
    assert found, text
    return found.group(1)


async def campaign(app: Harness, document: str, version: int) -> dict[str, Any]:
    answer = await app.api.get(f"/v1/documents/{document}/versions/{version}/campaign")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def counts(body: dict[str, object]) -> dict[str, object]:
    names = ("total", "acknowledged", "declined", "exception_requested", "pending", "overdue")
    return {name: body[name] for name in names}


async def test_an_org_unit_campaign_mails_its_members_and_each_answers_their_way(settings: Settings) -> None:
    with mail_server() as server:
        tuned_settings = mail_settings(settings, server, link_signing_key=KEY)
        async with smits(tuned_settings, [*ALL, "console"]) as app:
            await people(app)
            review = await open_review(app, settings)

            # Version 1 to the unit: its three enabled members, the disabled one left out.
            first = await publish(app, review, S1, [{"org_unit": "Ops"}])
            assert first.status_code == 201, first.text
            document = first.json()["document_id"]
            assert sorted(r["recipient"] for r in first.json()["recipients"]) == OPS
            assert {r["org_unit"] for r in first.json()["recipients"]} == {"Ops"}
            got = await eventually(lambda: _accepted(server), lambda mails: len(mails) >= 3, what="three mails")
            mails = by_recipient(got)
            assert sorted(mails) == OPS
            assert len(got) == 3
            links: dict[str, str] = {}
            for recipient, message in mails.items():
                assert message["Subject"] == "Please acknowledge: Ops strategy, version 1"
                assert message.get_content_type() == "multipart/alternative"
                text, page = parts(message)
                assert S1 in text
                assert "This is the first version of this document you receive." in text
                assert "This is the first version of this document you receive." in page
                assert f"{PUBLIC_URL}/documents/{document}" in text
                assert f'<a href="{PUBLIC_URL}/documents/{document}">' in page
                links[recipient] = signed_path(text)
                assert html.escape(PUBLIC_URL + links[recipient]) in page
            assert len(set(links.values())) == 3  # one link per person

            # Ana follows the sign-in link, signed in, and acknowledges there.
            async with browser_of(app, ANA) as ana:
                shown = await ana.get(f"/documents/{document}")
                assert shown.status_code == 200, shown.text
                assert "Acknowledge version 1" in shown.text
                assert "Request an exception" in shown.text
                token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
                assert token
                done = await ana.post(
                    f"/documents/{document}/acknowledge", data={"csrf_token": token.group(1), "version": "1"}
                )
                assert done.status_code == 303, done.text

            # Ben uses his signed link: GET only shows it; POST records it once, as Ben, by signed link.
            async with httpx.AsyncClient(transport=app.transport, base_url=PUBLIC_URL) as anyone:
                look = await anyone.get(links[BEN])
                assert look.status_code == 200, look.text
                assert (look.json()["recipient"], look.json()["acknowledged_at"]) == (BEN, None)
                confirm = await anyone.get(links[BEN], headers={"accept": "text/html"})
                assert confirm.status_code == 200
                assert '<form method="post"' in confirm.text
                used = await anyone.post(links[BEN])
                assert used.status_code == 200, used.text
                assert used.json()["recipient"] == BEN
                again = await anyone.post(links[BEN])
                assert again.status_code == 409, again.text
                assert again.json()["link"] == "used"
                altered = links[CLEO][:-3] + ("AAA" if not links[CLEO].endswith("AAA") else "BBB")
                refused = await anyone.post(altered)
                assert (refused.status_code, refused.json()["link"]) == (403, "invalid"), refused.text
                # Ana's link after she acknowledged signed in: the acknowledgement is recorded, the link is spent.
                spent = await anyone.post(links[ANA])
                assert spent.status_code == 409, spent.text

            one = await campaign(app, document, 1)
            assert counts(one) == {
                "total": 3,
                "acknowledged": 2,
                "declined": 0,
                "exception_requested": 0,
                "pending": 1,
                "overdue": 0,
            }
            methods = {r["recipient"]: r["method"] for r in one["recipients"]}
            assert methods == {ANA: "session", BEN: "signed_link", CLEO: None}
            async with app.runtime.uow.begin() as session:
                audited = (
                    await session.scalars(select(AuditRow).where(AuditRow.action == "acknowledgement.record"))
                ).all()
            assert sorted((row.principal, row.method) for row in audited) == [(ANA, "session"), (BEN, "signed_link")]

            # Version 2 (Ana also named in person: one acknowledgement, one mail): each is told what changed since
            # the version they acknowledged; Cleo acknowledged none.
            second = await publish(app, review, S2, [{"org_unit": "Ops"}, {"name": ANA.upper(), "required": False}])
            assert second.status_code == 201, second.text
            assert sorted(r["recipient"] for r in second.json()["recipients"]) == OPS
            got = await eventually(lambda: _accepted(server), lambda mails: len(mails) >= 6, what="three more mails")
            assert len(got) == 6
            later = by_recipient(got[3:])
            assert sorted(later) == OPS
            for recipient in (ANA, BEN):
                text, page = parts(later[recipient])
                assert "Changes since version 1, the one you acknowledged:" in text
                changes = text.split("What changed for you:", 1)[1]
                assert S2 in changes
                assert S1 not in changes
                assert "Changes since version 1, the one you acknowledged:" in page
            text, _ = parts(later[CLEO])
            changes = text.split("What changed for you:", 1)[1]
            assert "You have not acknowledged an earlier version of this document." in changes
            assert changes.index(S2) < changes.index(S1)  # newest first
            two = await campaign(app, document, 2)
            lasts = {r["recipient"]: r["last_acknowledged_version"] for r in two["recipients"]}
            assert lasts == {ANA: 1, BEN: 1, CLEO: None}
            async with app.runtime.uow.begin() as session:
                published = (
                    await session.scalars(
                        select(TimelineRow.data)
                        .where(TimelineRow.type == "review.document_published")
                        .order_by(TimelineRow.sequence)
                    )
                ).all()
            schema = yaml.safe_load(ASYNCAPI.read_text())["components"]["schemas"]["ReviewDocumentPublishedData"]
            for data in published:
                jsonschema.validate(data, schema)
            details = {d["email"]: d for d in published[-1]["recipients_detail"]}
            assert sorted(details) == OPS
            assert details[ANA]["last_acknowledged_version"] == 1

            async with httpx.AsyncClient(transport=app.transport, base_url=PUBLIC_URL) as anyone:
                replaced = await anyone.post(links[CLEO])  # version 1's link, now that version 2 replaced it
                assert (replaced.status_code, replaced.json()["link"]) == (403, "other_version"), replaced.text

            # Ben declines version 2 (API), Cleo asks for an exception (console); a reason is required.
            ben = await app.person(BEN)
            no_reason = await ben.post(f"/v1/documents/{document}/acknowledgements", json={"decision": "decline"})
            assert (no_reason.status_code, no_reason.json()["field"]) == (422, "reason"), no_reason.text
            declined = await ben.post(
                f"/v1/documents/{document}/acknowledgements",
                json={"decision": "decline", "reason": "Not my area any more."},
            )
            assert declined.status_code == 200, declined.text
            assert (declined.json()["decision"], declined.json()["decision_reason"]) == (
                "declined",
                "Not my area any more.",
            )
            async with browser_of(app, CLEO) as cleo:
                shown = await cleo.get(f"/documents/{document}")
                token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
                assert token
                asked = await cleo.post(
                    f"/documents/{document}/answer",
                    data={"csrf_token": token.group(1), "version": "2", "decision": "exception", "reason": "On leave"},
                )
                assert asked.status_code == 303, asked.text
                shown = await cleo.get(f"/documents/{document}")
                assert "exception requested" in shown.text
                assert "On leave" in shown.text
            two = await campaign(app, document, 2)
            assert counts(two) == {
                "total": 3,
                "acknowledged": 0,
                "declined": 1,
                "exception_requested": 1,
                "pending": 1,
                "overdue": 0,
            }
            states = {r["recipient"]: r["state"] for r in two["recipients"]}
            assert states == {ANA: "pending", BEN: "declined", CLEO: "exception_requested"}
            # A forwarded mail's link cannot overturn the answer its recipient gave (signing in can).
            async with httpx.AsyncClient(transport=app.transport, base_url=PUBLIC_URL) as anyone:
                overturned = await anyone.post(signed_path(parts(later[CLEO])[0]))
            assert (overturned.status_code, overturned.json()["link"]) == (409, "answered"), overturned.text
            assert {r["recipient"]: r["state"] for r in (await campaign(app, document, 2))["recipients"]} == states

            # My work: a declined version leaves the list; an exception request stays, marked.
            bens = (await ben.get("/v1/me/pending")).json()["documents_to_acknowledge"]
            assert bens == []
            cleo_api = await app.person(CLEO)
            cleos = (await cleo_api.get("/v1/me/pending")).json()["documents_to_acknowledge"]
            assert [(d["version"], d["exception_requested"]) for d in cleos] == [(2, True)]
            # An acknowledgement still counts after a decline; a decline after acknowledging is refused.
            assert (await ben.post(f"/v1/documents/{document}/acknowledgements", json={})).status_code == 200
            late = await ben.post(
                f"/v1/documents/{document}/acknowledgements", json={"decision": "exception", "reason": "x"}
            )
            assert late.status_code == 409, late.text

            # The register.
            register = await app.api.get("/v1/documents")
            assert register.status_code == 200, register.text
            [entry] = register.json()["items"]
            assert (entry["id"], entry["current_version"], entry["status"], entry["overdue"]) == (
                document,
                2,
                "published",
                0,
            )
            for params, found in (
                ({"kind": "strategy_plan"}, 1),
                ({"kind": "tactical_plan"}, 0),
                ({"status": "draft"}, 0),
                ({"has_overdue": "true"}, 0),
                ({"has_overdue": "false"}, 1),
                ({"q": "OPS STRAT"}, 1),
                ({"q": "%"}, 0),
                ({"org_unit": "Ops"}, 0),
            ):
                answer = await app.api.get("/v1/documents", params=params)
                assert len(answer.json()["items"]) == found, (params, answer.text)
            assert (await app.api.get("/v1/documents", params={"cursor": "nope"})).status_code == 400

            # An entry naming nobody is refused, saying which.
            for entry_in, words in (
                ({"role": "approver"}, "role 'approver'"),
                ({"org_unit": "Nowhere"}, "org unit 'Nowhere'"),
                ({"name": DISABLED}, f"person {DISABLED!r}"),
            ):
                nobody = await app.api.post(
                    f"/v1/reviews/{review}/documents",
                    json={
                        "kind": "mission_and_vision",
                        "title": "M&V",
                        "publish": True,
                        "certified_by": "cio",
                        "distribution": [entry_in],
                    },
                )
                assert nobody.status_code == 422, nobody.text
                assert words in nobody.json()["detail"]
                assert nobody.json()["field"] == "distribution[0]"
    assert len(server.accepted) == 6  # nothing else was mailed


async def test_without_a_signing_key_no_signed_link_is_accepted(settings: Settings) -> None:
    link = AckLink(
        recipient=ANA,
        document_id=uuid.uuid4(),
        version=1,
        expires_at=datetime.now(UTC) + timedelta(days=1),
        token_id="t",
    )
    token = sign(link, secret=KEY, now=datetime.now(UTC))
    async with smits(settings, ["engine"]) as app:
        for method in ("GET", "POST"):
            answer = await app.api.request(method, "/v1/acknowledge-link", params={"token": token})
            assert answer.status_code == 404, answer.text
            assert "signed links are off" in answer.json()["detail"]


async def test_a_distribution_too_large_for_one_event_is_refused_in_words(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published event names every recipient with their change summary; past `MAX_RECIPIENTS` it would outgrow
    Kafka's message size and park the outbox, so nobody would be told. The limit is lowered here to the unit's size
    minus one (the real one is 5,000)."""
    monkeypatch.setattr(flows_documents, "MAX_RECIPIENTS", len(OPS) - 1)
    async with smits(settings, ["engine"]) as app:
        await people(app)
        review = await open_review(app, settings)
        refused = await publish(app, review, S1, [{"org_unit": "Ops"}])
        within = await publish(app, review, S1, [{"name": ANA}, {"name": BEN}])
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "distribution"
    assert f"names {len(OPS)} people" in refused.json()["detail"]
    assert within.status_code == 201, within.text
