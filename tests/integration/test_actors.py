"""Every action is the caller's: for every write route, the recorded actor (timeline, approval or
acknowledgement row, audit record) is the authenticated principal, and the review rights hold.

Write routes are enumerated from the live OpenAPI spec: a new one fails the first test until it has a step
here (or is listed as handled elsewhere), so none can slip through unaudited."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from services.core.auth import Scope
from services.core.identity import audit, store
from services.core.identity.audit import AuditRow
from services.core.identity.model import Role
from services.core.settings import Settings
from services.notifier.persistence import DeliveryRow
from services.strategy_engine.persistence import (
    AcknowledgementRow,
    ApprovalRow,
    AssessmentRow,
    ReviewRow,
    TimelineRow,
    TransitionRow,
)
from tests.support.dead_letters import plant_dead_letter
from tests.support.events import accepted, feed_engine
from tests.support.harness import Harness, smits
from tests.support.kafka import Raw
from tests.support.waiting import eventually

HANDLED_ELSEWHERE = ("/auth/", "/v1/users", "/v1/org-units", "/v1/keys", "/v1/acknowledge-link")
"""Identity's own routes, audited and tested with identity; the signed acknowledgement link, whose proof is its
token and not a caller's credential (audited with method `signed_link`, tested in test_campaigns.py)."""
NOT_AUDITED = {
    ("POST", "/v1/triggers"): "machine intake: rate-limited per caller, its record is the trigger itself",
    ("POST", "/v1/policies/dry-run"): "changes nothing",
}
UNIT, SUBUNIT, ELSEWHERE = "bu-payments", "bu-payments-cards", "bu-lending"
IMPACT = {"rating": "high", "statement": "changes the ICT third-party register"}
APPROVER_1, APPROVER_2 = "approver-1@example.org", "approver-2@example.org"
RECIPIENT_1, RECIPIENT_2 = "recipient-1@example.org", "recipient-2@example.org"
COMPLETE: dict[str, Any] = {
    "impact": {"perspective": IMPACT, "position": IMPACT, "plans": IMPACT, "patterns": IMPACT},
    "risk": {"likelihood": 3, "impact": 4, "treatment": "mitigate"},
    "recommendation": {"summary": "adopt"},
    "approvers": {"mode": "quorum", "names": [APPROVER_1, APPROVER_2.upper()], "required": 2},
}


@dataclass(kw_only=True)
class World:
    app: Harness
    people: dict[str, httpx.AsyncClient]
    review: str
    others: list[str]
    ids: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str) -> httpx.AsyncClient:
        return self.people[who]


@dataclass(frozen=True, kw_only=True)
class Done:
    """What a step did: the request (replayed by a caller who lacks the role), who did it and the audit record
    it must have left."""

    method: str
    url: str
    body: dict[str, Any] | None
    caller: str
    action: str
    target: str
    refused_by: str | None = None
    """Who the replay is refused for (403) when the step's route is a person's own; else a key lacking the role."""


Step = Callable[[World], Awaitable[Done]]


def _email(who: str) -> str:
    return f"{who}@example.org"


async def _call(world: World, who: str, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
    return await world.as_(who).request(method, url, json=body)


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    for word in words:
        assert word in response.text, (word, body)
    return body


def _refused_field(response: httpx.Response, name: str, *words: str) -> None:
    body = _problem(response, 422, *words)
    assert name in [error["field"] for error in body.get("errors", [])] or body.get("field") == name, body


async def _timeline(world: World, review: str, type_: str) -> dict[str, Any]:
    async with world.app.runtime.uow.begin() as session:
        rows = (
            await session.scalars(
                select(TimelineRow)
                .where(TimelineRow.review_id == uuid.UUID(review), TimelineRow.type == type_)
                .order_by(TimelineRow.sequence.desc())
            )
        ).all()
    assert rows, type_
    return rows[0].data


async def _last(world: World, row: Any, *where: Any) -> Any:
    async with world.app.runtime.uow.begin() as session:
        found = (await session.scalars(select(row).where(*where))).all()
    assert found, row
    return found[-1]


# --- one step per write route, in an order the review cycle allows ------------------------------------------


async def patch_review(world: World) -> Done:
    url = f"/v1/reviews/{world.review}"
    _refused_field(await _call(world, "manager", "PATCH", url, {"owner": "nobody@example.org"}), "owner", "person")
    _refused_field(await _call(world, "manager", "PATCH", url, {"actor": "cio"}), "actor", "signed-in caller")
    _problem(await _call(world, "contributor", "PATCH", url, {"title": "t"}), 403, "owner", "strategy manager")
    body = {"owner": _email("owner").upper()}
    assert _ok(await _call(world, "manager", "PATCH", url, body))["owner"] == _email("owner")
    assert (await _timeline(world, world.review, "review.updated"))["actor"] == _email("manager")
    return Done(
        method="PATCH",
        url=url,
        body=body,
        caller=_email("manager"),
        action="review.update",
        target=f"review:{world.review}",
    )


async def transition(world: World) -> Done:
    url = f"/v1/reviews/{world.review}/transitions"
    _refused_field(await _call(world, "owner", "POST", url, {"to": "assess", "actor": "cio"}), "actor")
    _problem(await _call(world, "contributor", "POST", url, {"to": "assess"}), 403, "owner@example.org")
    body = {"to": "assess"}
    assert _ok(await _call(world, "owner", "POST", url, body))["state"] == "assess"  # the owner steers
    row = await _last(world, TransitionRow, TransitionRow.review_id == uuid.UUID(world.review))
    assert (row.to_state, row.actor) == ("assess", _email("owner"))
    assert (await _timeline(world, world.review, "review.transitioned"))["actor"] == _email("owner")
    return Done(
        method="POST",
        url=url,
        body=body,
        caller=_email("owner"),
        action="review.transition",
        target=f"review:{world.review}",
    )


async def assessment(world: World) -> Done:
    url = f"/v1/reviews/{world.review}/assessments"
    _refused_field(await _call(world, "contributor", "POST", url, {**COMPLETE, "actor": "cio"}), "actor")
    outside = await _call(world, "outsider", "POST", url, COMPLETE)
    _problem(outside, 403, UNIT, "contributor")  # a contributor, but of another unit
    _problem(await _call(world, "approver-x", "POST", url, COMPLETE), 403)  # an approver edits nothing
    named_badly = {**COMPLETE, "approvers": {"names": ["cio"]}}
    _refused_field(await _call(world, "contributor", "POST", url, named_badly), "approvers.names", "e-mail")
    _ok(await _call(world, "contributor", "POST", url, COMPLETE), 201)  # a contributor of a unit under it
    row = await _last(world, AssessmentRow, AssessmentRow.review_id == uuid.UUID(world.review))
    assert row.created_by == _email("contributor")
    assert row.body["approvers"]["names"] == [APPROVER_1, APPROVER_2]  # e-mail addresses, normalised
    assert (await _timeline(world, world.review, "review.assessment_recorded"))["actor"] == _email("contributor")
    for to in ("generate", "approval"):
        _ok(await _call(world, "manager", "POST", f"/v1/reviews/{world.review}/transitions", {"to": to}))
    return Done(
        method="POST",
        url=url,
        body=COMPLETE,
        caller=_email("contributor"),
        action="assessment.record",
        target=f"review:{world.review}",
    )


async def approval(world: World) -> Done:
    url = f"/v1/reviews/{world.review}/approvals"
    verdict = {"version": 1, "verdict": "approve"}
    as_other = await _call(world, "approver-1", "POST", url, {**verdict, "approver": APPROVER_2})
    _refused_field(as_other, "approver", "the approver is the signed-in caller")
    _problem(await _call(world, "approver-x", "POST", url, verdict), 403, "approver-x@example.org", "not an approver")
    _problem(await _call(world, "manager", "POST", url, verdict), 403, "does not hold the approver role")
    _problem(await _call(world, "service", "POST", url, verdict), 403, "no person")
    assert _ok(await _call(world, "approver-1", "POST", url, verdict), 201) == {"decision": "pending"}
    row = await _last(world, ApprovalRow)
    assert row.approver == APPROVER_1
    assert (await _timeline(world, world.review, "review.approval_recorded"))["approver"] == APPROVER_1
    assert _ok(await _call(world, "approver-2", "POST", url, verdict), 201) == {"decision": "approved"}
    _ok(await _call(world, "manager", "POST", f"/v1/reviews/{world.review}/transitions", {"to": "publish"}))
    return Done(
        method="POST",
        url=url,
        body=verdict,
        caller=APPROVER_2,
        action="approval.record",
        target=f"review:{world.review}",
    )  # the latest


async def add_document(world: World) -> Done:
    url = f"/v1/reviews/{world.review}/documents"
    plan = {
        "kind": "strategy_plan",
        "title": "IT strategy",
        "publish": True,
        "certified_by": "cio",
        "distribution": [{"name": RECIPIENT_1}, {"name": RECIPIENT_2.upper(), "required": False}],
    }
    _problem(await _call(world, "outsider", "POST", url, plan), 403, UNIT)
    bad = {**plan, "distribution": [{"name": "cfo"}]}
    _refused_field(await _call(world, "contributor", "POST", url, bad), "distribution.name", "e-mail")
    created = _ok(await _call(world, "contributor", "POST", url, plan), 201)
    assert [r["recipient"] for r in created["recipients"]] == [RECIPIENT_1, RECIPIENT_2]
    world.ids["document"] = created["document_id"]
    return Done(
        method="POST",
        url=url,
        body=plan,
        caller=_email("contributor"),
        action="document.create",
        target=f"document:{created['document_id']}",
    )


async def document_status(world: World) -> Done:
    draft = {"kind": "tactical_plan", "org_unit": UNIT, "title": "tactical"}
    created = _ok(await _call(world, "manager", "POST", f"/v1/reviews/{world.review}/documents", draft), 201)
    url = f"/v1/documents/{created['document_id']}/versions/{created['version']}/status"
    _problem(await _call(world, "outsider", "POST", url, {"to": "in_review"}), 403, UNIT)
    body = {"to": "in_review"}
    assert _ok(await _call(world, "contributor", "POST", url, body))["status"] == "in_review"
    return Done(
        method="POST",
        url=url,
        body=body,
        caller=_email("contributor"),
        action="document.status",
        target=f"document:{created['document_id']}",
    )


async def acknowledgement(world: World) -> Done:
    document = world.ids["document"]
    url = f"/v1/documents/{document}/acknowledgements"
    naming = await _call(world, "recipient-1", "POST", url, {"recipient": RECIPIENT_2})
    _refused_field(naming, "recipient", "the recipient is the signed-in caller")
    _problem(await _call(world, "service", "POST", url, {}), 403, "no person")
    behalf = {"on_behalf_of": RECIPIENT_2}
    _problem(await _call(world, "recipient-1", "POST", url, {**behalf, "reason": "r"}), 403, "only an admin")
    _refused_field(await _call(world, "admin", "POST", url, behalf), "reason", "reason")
    _refused_field(await _call(world, "admin", "POST", url, {**behalf, "reason": "  "}), "reason")
    own = _ok(await _call(world, "recipient-1", "POST", url, {}))
    assert (own["recipient"], own["recorded_by"], own["reason"]) == (RECIPIENT_1, RECIPIENT_1, None)
    mine = await _timeline(world, world.review, "document.acknowledged")
    assert (mine["recipient"], mine["recorded_by"], mine["on_behalf"]) == (RECIPIENT_1, RECIPIENT_1, False)
    reason = "signed the paper copy in the board meeting"
    recorded = _ok(await _call(world, "admin", "POST", url, {**behalf, "reason": reason}))
    assert (recorded["recipient"], recorded["recorded_by"], recorded["reason"]) == (
        RECIPIENT_2,
        _email("admin"),
        reason,
    )
    row = await _last(world, AcknowledgementRow, AcknowledgementRow.recipient == RECIPIENT_2)
    assert (row.recorded_by, row.reason) == (_email("admin"), reason)
    shown = await _timeline(world, world.review, "document.acknowledged")
    assert (shown["recipient"], shown["recorded_by"], shown["on_behalf"], shown["reason"]) == (
        RECIPIENT_2,
        _email("admin"),
        True,
        reason,
    )
    versions = _ok(await world.app.api.get(f"/v1/documents/{document}"))["versions"]
    assert {(r["recipient"], r["recorded_by"]) for r in versions[-1]["recipients"]} == {
        (RECIPIENT_1, RECIPIENT_1),
        (RECIPIENT_2, _email("admin")),
    }
    return Done(
        method="POST",
        url=url,
        body={**behalf, "reason": reason},
        caller=_email("admin"),
        action="acknowledgement.record",
        target=f"document:{document}",
    )


async def merge(world: World) -> Done:
    source, into = world.others
    url = f"/v1/reviews/{source}/merge"
    body = {"into": into}
    _refused_field(await _call(world, "manager", "POST", url, {**body, "actor": "cio"}), "actor")
    _problem(await _call(world, "owner", "POST", url, body), 403, "strategy manager")  # owns neither
    assert _ok(await _call(world, "manager", "POST", url, body))["id"] == into
    row = await _last(world, TransitionRow, TransitionRow.review_id == uuid.UUID(source))
    assert (row.to_state, row.actor) == ("merged", _email("manager"))
    return Done(
        method="POST", url=url, body=body, caller=_email("manager"), action="review.merge", target=f"review:{source}"
    )


async def create_subscription(world: World) -> Done:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["review.closed"]}
    created = _ok(await _call(world, "admin", "POST", "/v1/subscriptions", body), 201)
    world.ids["subscription"] = created["id"]
    return Done(
        method="POST",
        url="/v1/subscriptions",
        body=body,
        caller=_email("admin"),
        action="subscription.create",
        target=f"subscription:{created['id']}",
    )


async def update_subscription(world: World) -> Done:
    url = f"/v1/subscriptions/{world.ids['subscription']}"
    body = {"description": "board webhooks"}
    _ok(await _call(world, "admin", "PATCH", url, body))
    return Done(
        method="PATCH",
        url=url,
        body=body,
        caller=_email("admin"),
        action="subscription.update",
        target=f"subscription:{world.ids['subscription']}",
    )


async def rotate_secret(world: World) -> Done:
    url = f"/v1/subscriptions/{world.ids['subscription']}/secret/rotate"
    secret = _ok(await _call(world, "admin", "POST", url, None))["secret"]
    record = await _audit(world, "subscription.rotate_secret", f"subscription:{world.ids['subscription']}")
    assert secret not in str(record.detail)
    return Done(
        method="POST",
        url=url,
        body=None,
        caller=_email("admin"),
        action="subscription.rotate_secret",
        target=record.target,
    )


async def resend(world: World) -> Done:
    delivery = uuid.uuid4()
    async with world.app.runtime.uow.begin() as session:
        session.add(
            DeliveryRow(
                id=delivery,
                msg_id=f"msg_{delivery.hex}",
                subscription_id=uuid.UUID(world.ids["subscription"]),
                event_type="review.closed",
                review_id=world.review,
                sequence=1,
                body="{}",
                status="failed",
                attempt_count=3,
                created_at=datetime.now(UTC),
            )
        )
    url = f"/v1/deliveries/{delivery}/resend"
    _ok(await _call(world, "admin", "POST", url, None), 202)
    return Done(
        method="POST",
        url=url,
        body=None,
        caller=_email("admin"),
        action="delivery.resend",
        target=f"delivery:{delivery}",
    )


async def replay_dead_letter(world: World) -> Done:
    settings = world.app.runtime.settings
    record = Raw(b"{not json", [("content-type", b"application/cloudevents+json")], b"k")
    dead_letter = await plant_dead_letter(world.app, settings, record, offset=1_000_000)
    url = f"/v1/dead-letters/{dead_letter}/replay"
    _ok(await _call(world, "admin", "POST", url, None), 202)
    return Done(
        method="POST",
        url=url,
        body=None,
        caller=_email("admin"),
        action="dead_letter.replay",
        target=f"dead_letter:{dead_letter}",
    )


async def delete_subscription(world: World) -> Done:
    url = f"/v1/subscriptions/{world.ids['subscription']}"
    _ok(await _call(world, "admin", "DELETE", url, None), 204)
    return Done(
        method="DELETE",
        url=url,
        body=None,
        caller=_email("admin"),
        action="subscription.delete",
        target=f"subscription:{world.ids['subscription']}",
    )


async def preferences(world: World) -> Done:
    url = "/v1/me/preferences"
    body = {"time_zone": "Europe/Berlin", "quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert _ok(await _call(world, "owner", "PUT", url, body))["time_zone"] == "Europe/Berlin"
    owner = await _call(world, "owner", "GET", url, None)
    assert _ok(owner)["quiet_hours"] == {"start": "22:00", "end": "07:00"}  # the caller's own, nobody else's
    assert _ok(await _call(world, "manager", "GET", url, None))["time_zone"] == "UTC"
    async with world.app.runtime.uow.begin() as session:
        owner_row = await store.principal_by_email(session, _email("owner"))
    assert owner_row is not None
    return Done(
        method="PUT",
        url=url,
        body=body,
        caller=_email("owner"),
        action="preferences.update",
        target=f"principal:{owner_row.id}",
        refused_by="service",
    )


STEPS: dict[tuple[str, str], Step] = {
    ("PATCH", "/v1/reviews/{review_id}"): patch_review,
    ("POST", "/v1/reviews/{review_id}/transitions"): transition,
    ("POST", "/v1/reviews/{review_id}/assessments"): assessment,
    ("POST", "/v1/reviews/{review_id}/approvals"): approval,
    ("POST", "/v1/reviews/{review_id}/documents"): add_document,
    ("POST", "/v1/documents/{document_id}/versions/{number}/status"): document_status,
    ("POST", "/v1/documents/{document_id}/acknowledgements"): acknowledgement,
    ("POST", "/v1/reviews/{review_id}/merge"): merge,
    ("POST", "/v1/subscriptions"): create_subscription,
    ("PATCH", "/v1/subscriptions/{subscription_id}"): update_subscription,
    ("POST", "/v1/subscriptions/{subscription_id}/secret/rotate"): rotate_secret,
    ("POST", "/v1/deliveries/{delivery_id}/resend"): resend,
    ("POST", "/v1/dead-letters/{dead_letter_id}/replay"): replay_dead_letter,
    ("DELETE", "/v1/subscriptions/{subscription_id}"): delete_subscription,
    ("PUT", "/v1/me/preferences"): preferences,
}
"""Run in this order (the review cycle needs it)."""


async def _audit(world: World, action: str, target: str) -> AuditRow:
    record: AuditRow = await _last(world, AuditRow, AuditRow.action == action, AuditRow.target == target)
    return record


def _write_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"post", "put", "patch", "delete"} and not path.startswith(HANDLED_ELSEWHERE)
    } - set(NOT_AUDITED)


async def _world(app: Harness, settings: Settings) -> World:
    now = datetime.now(UTC)
    async with app.runtime.uow.begin() as session:
        await store.create_unit(session, name=UNIT, parent=None, lead=None, now=now)
        await store.create_unit(session, name=SUBUNIT, parent=UNIT, lead=None, now=now)
        await store.create_unit(session, name=ELSEWHERE, parent=None, lead=None, now=now)
    people = {
        "manager": await app.person(_email("manager"), Role.STRATEGY_MANAGER),
        "owner": await app.person(_email("owner"), Role.CONTRIBUTOR),
        "contributor": await app.person(_email("contributor"), Role.CONTRIBUTOR, org_units=[SUBUNIT]),
        "outsider": await app.person(_email("outsider"), Role.CONTRIBUTOR, org_units=[ELSEWHERE]),
        "approver-1": await app.person(APPROVER_1, Role.APPROVER),
        "approver-2": await app.person(APPROVER_2, Role.APPROVER),
        "approver-x": await app.person(_email("approver-x"), Role.APPROVER, org_units=[UNIT]),
        "recipient-1": await app.person(RECIPIENT_1, Role.CONTRIBUTOR),
        "recipient-2": await app.person(RECIPIENT_2, Role.CONTRIBUTOR),
        "admin": await app.person(_email("admin"), Role.ADMIN),
        "service": app.api,  # a service account with every scope: no person
        # keys whose owner lacks the role their scope needs
        "viewer": await app.person(_email("viewer"), Role.VIEWER, scopes=[Scope.REVIEWS_WRITE]),
        "no-admin": await app.person(_email("no-admin"), Role.STRATEGY_MANAGER, scopes=[Scope.SUBSCRIPTIONS_ADMIN]),
    }
    regulations = ("DORA", "NIS2", "NIS2-guidance")
    docs = [
        accepted(
            "regulation_update",
            f"r-{r}",
            at=datetime.now(UTC),
            subject=UNIT,
            regulation_id=r,
            title=r,
            jurisdiction="EU",
            issuing_body="EP",
            change_type="new",
            effective_date="2027-06-01",
        )
        for r in regulations
    ]
    await feed_engine(settings, docs)
    await eventually(lambda: app.count(ReviewRow), lambda n: n == len(regulations), what="reviews opened")
    items = (await app.api.get("/v1/reviews")).json()["items"]
    by_key = {item["correlation_key"]: item["id"] for item in items}
    review, *others = (by_key[f"regulation:{r}"] for r in regulations)
    return World(app=app, people=people, review=review, others=others)


async def test_every_write_route_records_the_caller_as_its_actor(settings: Settings) -> None:
    async with smits(settings) as app:
        spec = (await app.api.get("/openapi.json")).json()
        assert _write_routes(spec) == set(STEPS), "a write route without a step here (or one that went away)"
        world = await _world(app, settings)
        for route, step in STEPS.items():
            done = await step(world)
            record = await _audit(world, done.action, done.target)
            assert (record.principal, record.method) == (done.caller, "api_key"), route
            assert record.request_id, route
            if done.refused_by:  # a person's own route: no service account may act as one
                _problem(await _call(world, done.refused_by, done.method, done.url, done.body), 403)
                continue
            lacking = "no-admin" if route[1].startswith(("/v1/subscriptions", "/v1/deliveries")) else "viewer"
            refused = await _call(world, lacking, done.method, done.url, done.body)
            _problem(refused, 403, "scope")  # the key has the scope, its owner's roles do not grant it
        async with app.runtime.uow.begin() as session:
            count, broken = await audit.verify(session)  # the chain a whole run of every write route built
    assert broken is None
    assert count >= len(STEPS)


async def test_refused_writes_leave_no_audit_record_and_change_nothing(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        world = await _world(app, settings)
        before = await app.count(AuditRow)
        for who, body in (("outsider", {"title": "mine"}), ("viewer", {"title": "mine"})):
            assert (await _call(world, who, "PATCH", f"/v1/reviews/{world.review}", body)).status_code == 403
        assert await app.count(AuditRow) == before
        assert (await app.api.get(f"/v1/reviews/{world.review}")).json()["title"] != "mine"
