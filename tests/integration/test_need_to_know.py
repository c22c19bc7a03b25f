"""Need-to-know: a restricted merger & acquisition review is absent for everyone not cleared (every list, 404 on
every detail and write route, enumerated from OpenAPI), visible to those cleared by role, org unit (or a unit
above theirs), principal or for all restricted data; its webhooks carry only ids to an uncleared subscription."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.core.db import UnitOfWork
from services.core.identity import store
from services.core.identity.audit import AuditRow
from services.core.identity.clearance import ALL, visible
from services.core.identity.model import Role
from services.core.settings import Settings
from services.notifier.persistence import DeliveryRow
from services.strategy_engine.flows.correlation import handle_accepted_batch
from services.strategy_engine.persistence import (
    DecidedTriggerRow,
    EngineOutboxRow,
    ReviewClearanceRow,
    ReviewRow,
    visible_to,
)
from services.strategy_engine.policies import load
from tests.integration.test_engine_flow import messages
from tests.support.events import DORA, accepted, tuned
from tests.support.harness import Harness, smits
from tests.support.receiver import Receiver
from tests.support.verify import verify_both
from tests.support.waiting import eventually

NOW = datetime(2026, 11, 23, tzinfo=UTC)
DEAL = {
    "deal_id": "D-SECRET-1",
    "deal_type": "acquisition",
    "counterparty": "Contoso Secret",
    "announced_on": "2026-11-01",
}
SECRETS = ("D-SECRET-1", "Contoso Secret", "ma-secret-1")
"""What an uncleared caller must never see of the deal (the review's id is added once it exists)."""
CLEARANCE = ["role:strategy_manager", "unit:executive-board", "principal:cfo@corp.example"]


# --- the flow: a restricted policy opens a restricted review -------------------------------------------------


async def test_a_merger_trigger_opens_a_restricted_review_with_its_clearance_and_restricted_events(
    uow: UnitOfWork,
) -> None:
    documents = [
        accepted("merger_acquisition", "m1", at=NOW, **DEAL),
        accepted("merger_acquisition", "m2", at=NOW, **DEAL),  # related news: attaches
        accepted("regulation_update", "r1", at=NOW, **DORA),
    ]
    async with uow.begin() as session:
        await handle_accepted_batch(session, messages(documents), policies=load(), now=NOW)
    async with uow.begin() as session:
        reviews = {row.category: row for row in (await session.scalars(select(ReviewRow))).all()}
        grants = (await session.execute(select(ReviewClearanceRow.review_id, ReviewClearanceRow.grant))).all()
        events = [orjson.loads(row.value) for row in (await session.scalars(select(EngineOutboxRow))).all()]
        attached = await session.scalar(select(DecidedTriggerRow).where(DecidedTriggerRow.event_id == "m2"))
    deal, regulation = reviews["merger_acquisition"], reviews["regulation_update"]
    assert deal.restricted
    assert not regulation.restricted
    assert [tuple(grant) for grant in grants] == [(deal.id, "role:strategy_manager")]
    assert attached is not None
    assert attached.review_id == deal.id  # so it is hidden with the review
    by_review = {(e["review_id"], e["type"]): e["restricted"] for e in events}
    assert by_review == {
        (str(deal.id), "review.opened"): True,
        (str(deal.id), "review.trigger_attached"): True,
        (str(regulation.id), "review.opened"): False,
    }


# --- the SQL rule is the pure rule -------------------------------------------------------------------------

TOKENS = ["role:viewer", "role:strategy_manager", "unit:board", "unit:finance", "principal:a@x.example", ALL]
CLEARANCES: list[tuple[bool, frozenset[str]]] = [
    (False, frozenset()),
    (True, frozenset()),  # restricted to nobody: only `*` sees it
    (True, frozenset({"*"})),
    *[(True, frozenset({token})) for token in TOKENS[:-1]],
    (True, frozenset({"role:strategy_manager", "unit:board"})),
    (True, frozenset({"unit:finance", "principal:a@x.example"})),
]


async def _seeded(uow: UnitOfWork) -> dict[uuid.UUID, tuple[bool, frozenset[str]]]:
    async with uow.begin() as session:
        if await session.scalar(select(ReviewRow.id).limit(1)) is None:
            for n, (restricted, clearance) in enumerate(CLEARANCES):
                review = ReviewRow(
                    id=uuid.uuid4(),
                    correlation_key=f"k{n}",
                    open_key=f"k{n}",
                    policy_id="p",
                    title=f"review {n}",
                    category="merger_acquisition",
                    severity="high",
                    scope=None,
                    state="triage",
                    opened_at=NOW,
                    phase_entered_at=NOW,
                    first_trigger_at=NOW,
                    last_trigger_at=NOW,
                    restricted=restricted,
                )
                session.add(review)
                await session.flush()
                session.add_all(ReviewClearanceRow(review_id=review.id, grant=grant) for grant in clearance)
        rows = (await session.scalars(select(ReviewRow))).all()
        cleared = (await session.execute(select(ReviewClearanceRow.review_id, ReviewClearanceRow.grant))).all()
    lists: dict[uuid.UUID, set[str]] = {row.id: set() for row in rows}
    for review_id, grant in cleared:
        lists[review_id].add(grant)
    return {row.id: (row.restricted, frozenset(lists[row.id])) for row in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grants=st.frozensets(st.sampled_from(TOKENS)))
async def test_the_sql_visibility_rule_is_the_pure_rule_for_any_set_of_grants(
    uow: UnitOfWork, grants: frozenset[str]
) -> None:
    reviews = await _seeded(uow)
    async with uow.begin() as session:
        seen = set((await session.scalars(select(ReviewRow.id).where(visible_to(grants)))).all())
    expected = {
        rid
        for rid, (restricted, clearance) in reviews.items()
        if visible(grants, restricted=restricted, clearance=clearance)
    }
    assert seen == expected
    assert (ALL in grants) == (seen == set(reviews))


# --- every route, every kind of clearance, and the webhooks -----------------------------------------------------


def _policies(tmp_path: Path) -> Path:
    """The bundled policies, with the deal policy cleared for a role, an org unit and a principal."""
    raw = yaml.safe_load((Path(__file__).parents[2] / "services/strategy_engine/default_policies.yaml").read_text())
    for policy in raw["policies"]:
        if policy["id"] == "merger-acquisition":
            policy["restricted_to"] = CLEARANCE
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _event(event_id: str, category: str, data: dict[str, Any], subject: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/deals/pipeline",
        "type": f"smits.trigger.{category}.v1",
        "subject": subject,
        "time": "2026-11-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }


READ_ONLY_FOR_OTHERS = re.compile(r"^/(healthz|readyz|metrics|openapi\.json|docs|redoc)")


def _get_routes(spec: dict[str, Any]) -> list[str]:
    return [path for path, operations in spec["paths"].items() if "get" in operations]


def _write_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Every write route on one review or one document."""
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"post", "patch", "put", "delete"} and ("{review_id}" in path or "{document_id}" in path)
    }


def _concrete(path: str, ids: dict[str, str]) -> str:
    """`path` with the deal's ids for its parameters (any other id: one that does not exist)."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


async def test_a_restricted_deal_is_invisible_to_the_uncleared_and_visible_to_the_cleared(
    settings: Settings, tmp_path: Path
) -> None:
    tuned_settings = tuned(settings, policies=_policies(tmp_path), ingest_restricted_to=CLEARANCE)
    with Receiver() as plain_hook, Receiver() as cleared_hook:
        async with smits(tuned_settings) as app:
            plain = await _subscribe(app, plain_hook.url)
            cleared = await _subscribe(app, cleared_hook.url, restricted_data=True)
            await _people(app)
            clients = {email: await app.person(email) for email in _PEOPLE}
            manager = clients["manager@corp.example"]
            posted = await app.api.post(
                "/v1/triggers",
                content=orjson.dumps(
                    [
                        _event("ma-secret-1", "merger_acquisition", DEAL, "Contoso Secret"),
                        _event("reg-1", "regulation_update", DORA, "bu-payments"),
                    ]
                ),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert posted.status_code == 202, posted.text
            items = await eventually(
                lambda: _json(manager, "/v1/reviews"), lambda page: len(page["items"]) == 2, what="two reviews"
            )
            await eventually(
                lambda: _json(manager, "/v1/triggers"), lambda page: len(page["items"]) == 2, what="two triggers"
            )
            deal = next(r for r in items["items"] if r["category"] == "merger_acquisition")
            other = next(r for r in items["items"] if r["category"] == "regulation_update")
            made = await manager.post(
                f"/v1/reviews/{deal['id']}/documents",
                json={"kind": "strategy_assessment_report", "title": "Contoso Secret plan"},
            )
            assert made.status_code == 201, made.text
            ids = {
                "review_id": deal["id"],
                "document_id": made.json()["document_id"],
                "source": "/deals/pipeline",
                "event_id": "ma-secret-1",
                "number": "1",
            }
            spec = (await app.api.get("/openapi.json")).json()
            secrets = (*SECRETS, deal["id"], ids["document_id"])

            # Uncleared: a viewer (reads) and a contributor (writes), and the admin service account.
            for email in ("viewer@corp.example", "contributor@corp.example"):
                await _sees_nothing(clients[email], spec, ids, secrets)
            await _sees_nothing(app.api, spec, ids, secrets)
            await _writes_nothing(clients["contributor@corp.example"], spec, ids, other["id"])

            # Cleared: by role, by a unit above the person's, by principal, and for all restricted data.
            withheld = await clients["auditor@corp.example"].get(f"/v1/reviews/{deal['id']}")
            cleared_now = await app.api.post(
                "/v1/users/auditor@corp.example/clearance", json={"cleared_restricted": True}
            )
            assert withheld.status_code == 404
            assert cleared_now.status_code == 200, cleared_now.text
            assert cleared_now.json()["cleared_restricted"] is True
            for email in ("manager@corp.example", "board@corp.example", "cfo@corp.example", "auditor@corp.example"):
                await _sees_everything(clients[email], spec, ids, deal["id"])

            await eventually(
                lambda: _count(plain_hook, cleared_hook), lambda n: n == (2, 2), what="two webhooks to each"
            )
            stored = await _bodies(app, plain["id"])
            audited = await _audited(app)
    # Webhooks: the regulation review in full to both; the deal in full only to the cleared subscription.
    plain_got = {m["data"]["review_id"]: m for m in (verify_both(plain["secret"], r) for r in plain_hook.received)}
    cleared_got = {
        m["data"]["review_id"]: m for m in (verify_both(cleared["secret"], r) for r in cleared_hook.received)
    }
    assert plain_got[other["id"]] == cleared_got[other["id"]]
    assert plain_got[deal["id"]] == {
        "type": "review.opened",
        "timestamp": plain_got[deal["id"]]["timestamp"],
        "data": {"review_id": deal["id"], "trigger": {"source": "/deals/pipeline", "id": "ma-secret-1"}},
    }
    assert cleared_got[deal["id"]]["data"]["title"] == "merger acquisition: Contoso Secret"
    assert cleared_got[deal["id"]]["data"]["trigger"]["subject"] == "Contoso Secret"
    assert not any(secret in body for body in stored for secret in SECRETS[:2])  # a resend sends the stored body
    assert ("subscription.clearance", f"subscription:{cleared['id']}") in audited
    assert ("user.clearance", "principal:auditor@corp.example") in audited


_PEOPLE = {
    "viewer@corp.example": ([Role.VIEWER], []),
    "contributor@corp.example": ([Role.CONTRIBUTOR], ["finance"]),
    "manager@corp.example": ([Role.STRATEGY_MANAGER], []),
    "board@corp.example": ([Role.VIEWER], ["board-office"]),  # under executive-board
    "cfo@corp.example": ([Role.VIEWER], []),
    "auditor@corp.example": ([Role.VIEWER], []),
}


async def _people(app: Harness) -> None:
    async with app.runtime.uow.begin() as session:
        for unit, parent in (("executive-board", None), ("board-office", "executive-board"), ("finance", None)):
            await store.create_unit(session, name=unit, parent=parent, lead=None, now=NOW)
        for email, (roles, units) in _PEOPLE.items():
            await store.create_person(session, email=email, name=email, roles=roles, org_units=units, now=NOW)


async def _subscribe(app: Harness, url: str, **fields: Any) -> dict[str, Any]:
    response = await app.api.post("/v1/subscriptions", json={"url": url, "event_types": ["review.opened"], **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["restricted_data"] is fields.get("restricted_data", False)
    return created


async def _json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, (path, response.text)
    return response.json()


async def _sees_nothing(
    client: httpx.AsyncClient, spec: dict[str, Any], ids: dict[str, str], secrets: tuple[str, ...]
) -> None:
    """Every GET route: no trace of the deal; a route about the deal itself is 404 (not 403)."""
    for path in _get_routes(spec):
        if READ_ONLY_FOR_OTHERS.match(path):
            continue
        response = await client.get(_concrete(path, ids))
        asked = set(ids.values()) if "{" in path else set()  # a 404 names what was asked for, nothing more
        if path == "/v1/deliveries":  # the operators' delivery log names reviews by id, as redacted webhooks do
            asked = {ids["review_id"]}
        if path == "/v1/audit":  # who did what to which id, as the delivery log; the detail is withheld
            asked = {ids["review_id"], ids["document_id"]}
        assert not any(secret in response.text for secret in secrets if secret not in asked), (path, response.text)
        if "{" in path and response.status_code != 403:  # 403: a route for another scope (admin, notifier)
            assert response.status_code == 404, (path, response.status_code, response.text)
    hidden = await client.get("/v1/reviews/" + ids["review_id"])
    missing = await client.get(f"/v1/reviews/{uuid.UUID(int=1)}")
    assert hidden.json()["detail"] == f"no review {ids['review_id']}"  # exactly what a missing review says
    assert missing.json()["detail"] == f"no review {uuid.UUID(int=1)}"
    dry_run = await client.post("/v1/policies/dry-run", json=_accepted_deal("ma-secret-2"))
    if dry_run.status_code == 200:
        assert dry_run.json()["outcome"] == "opened"  # as if there were no open review for the deal
        assert dry_run.json()["review_id"] is None


def _accepted_deal(event_id: str) -> dict[str, Any]:
    return {
        **accepted("merger_acquisition", event_id, at=NOW, **DEAL),
        "source": "/deals/pipeline",
    }


WRITES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/reviews/{review_id}"): {"owner": "someone"},
    ("POST", "/v1/reviews/{review_id}/transitions"): {"to": "assess"},
    ("POST", "/v1/reviews/{review_id}/assessments"): {},
    ("POST", "/v1/reviews/{review_id}/approvals"): {"version": 1, "verdict": "approve"},
    ("POST", "/v1/reviews/{review_id}/merge"): {"into": "OTHER"},
    ("POST", "/v1/reviews/{review_id}/documents"): {"kind": "strategy_assessment_report", "title": "t"},
    ("POST", "/v1/documents/{document_id}/versions/{number}/status"): {"to": "in_review"},
    ("POST", "/v1/documents/{document_id}/acknowledgements"): {"version": 1},
}


async def _writes_nothing(client: httpx.AsyncClient, spec: dict[str, Any], ids: dict[str, str], other: str) -> None:
    """Every write route on the deal (its review or its document) is 404 for an uncleared writer."""
    assert _write_routes(spec) == set(WRITES), "a new write route on a review or document: add it here"
    for (method, path), body in WRITES.items():
        body = {name: other if value == "OTHER" else value for name, value in body.items()}
        response = await client.request(method, _concrete(path, ids), json=body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
    into_deal = await client.post(f"/v1/reviews/{other}/merge", json={"into": ids["review_id"]})
    assert into_deal.status_code == 404, into_deal.text


async def _sees_everything(client: httpx.AsyncClient, spec: dict[str, Any], ids: dict[str, str], deal: str) -> None:
    listed = await _json(client, "/v1/reviews")
    assert deal in [r["id"] for r in listed["items"]]
    triggers = await _json(client, "/v1/triggers")
    assert "ma-secret-1" in [t["id"] for t in triggers["items"]]
    for path in _get_routes(spec):
        if "{" not in path or not path.startswith(("/v1/reviews", "/v1/documents", "/v1/decisions", "/v1/triggers")):
            continue
        response = await client.get(_concrete(path, ids))
        assert response.status_code == 200, (path, response.status_code, response.text)


async def _count(*receivers: Receiver) -> tuple[int, ...]:
    return tuple(len(receiver.received) for receiver in receivers)


async def _bodies(app: Harness, subscription_id: str) -> list[str]:
    async with app.runtime.uow.begin() as session:
        rows = await session.scalars(
            select(DeliveryRow.body).where(DeliveryRow.subscription_id == uuid.UUID(subscription_id))
        )
        return list(rows.all())


async def _audited(app: Harness) -> set[tuple[str, str]]:
    async with app.runtime.uow.begin() as session:
        return {(row.action, row.target) for row in (await session.scalars(select(AuditRow))).all()}


@pytest.mark.parametrize("cleared", [False, True])
async def test_changing_a_subscriptions_clearance_is_audited(settings: Settings, cleared: bool) -> None:
    async with smits(settings, ["notifier"]) as app:
        created = await _subscribe(app, "http://127.0.0.1:9/hooks", restricted_data=cleared)
        flipped = await app.api.patch(f"/v1/subscriptions/{created['id']}", json={"restricted_data": not cleared})
        unchanged = await app.api.patch(f"/v1/subscriptions/{created['id']}", json={"description": "d"})
        async with app.runtime.uow.begin() as session:
            actions = (
                await session.scalars(select(AuditRow.action).where(AuditRow.target == f"subscription:{created['id']}"))
            ).all()
    assert flipped.status_code == 200
    assert flipped.json()["restricted_data"] is (not cleared)
    assert unchanged.status_code == 200
    assert [a for a in actions if a == "subscription.clearance"] == ["subscription.clearance"] * (2 if cleared else 1)
    assert [a for a in actions if a != "subscription.clearance"] == [
        "subscription.create",
        "subscription.update",
        "subscription.update",
    ]  # every write is audited as such too
