"""`GET /v1/me/pending`, the console's "My work": reviews the caller owns, verdicts and acknowledgements waiting on
them, what is overdue; nothing of a restricted review until the caller is cleared for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.identity.model import Role
from services.core.settings import Settings
from services.strategy_engine.persistence import ApprovalRow
from tests.support import seeding
from tests.support.harness import Harness

NOW = datetime.now(UTC).replace(microsecond=0)
LATE, SOON, LATER = NOW - timedelta(hours=1), NOW + timedelta(days=2), NOW + timedelta(days=5)
ADA, BOB = "ada@corp.example", "bob@corp.example"
SECRET = ["role:strategy_manager"]


@pytest.fixture(params=seeding.DATABASES)
async def app(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> AsyncIterator[Harness]:
    async with seeding.engine_on(request.param, settings, tmp_path) as harness:
        yield harness


async def _seed(app: Harness) -> dict[str, str]:
    """Work for Ada and things that look like it but are not hers (or not visible to her), by name → id."""
    ids: dict[str, str] = {}
    async with app.runtime.uow.begin() as session:

        async def review(name: str, **fields: Any) -> Any:
            row = await seeding.review(session, opened_at=NOW - timedelta(days=3), title=name, **fields)
            ids[name] = str(row.id)
            return row

        await review("owned late", owner=ADA, state="assess", due_at=LATE)
        await review("owned, policy spelling", owner=" Ada@Corp.Example", due_at=SOON)
        await review("owned closed", owner=ADA, state="closed", due_at=LATE)
        await review("owned secret", owner=ADA, due_at=SOON, clearance=SECRET)
        source = await review("Bob's", owner=BOB, state="publish", due_at=SOON)

        reworked = await review("approval reworked", state="approval", due_at=LATE)
        await seeding.assessment(session, reworked, version=1, approvers=[ADA, BOB], at=NOW)
        await seeding.assessment(session, reworked, version=2, approvers=[BOB, ADA], at=NOW)
        given = await review("approval given", state="approval", due_at=LATE)
        first = await seeding.assessment(session, given, version=1, approvers=[ADA], at=NOW)
        session.add(ApprovalRow(assessment_id=first.id, approver=ADA, verdict="approve", at=NOW))
        again = await review("approval again", state="approval", due_at=LATER)
        older = await seeding.assessment(session, again, version=1, approvers=[ADA], at=NOW)
        session.add(ApprovalRow(assessment_id=older.id, approver=ADA, verdict="defer", at=NOW))
        await seeding.assessment(session, again, version=2, approvers=[ADA], at=NOW)
        dropped = await review("approval without her now", state="approval", due_at=LATE)
        await seeding.assessment(session, dropped, version=1, approvers=[ADA], at=NOW)
        await seeding.assessment(session, dropped, version=2, approvers=[f"b{ADA}"], at=NOW)  # contains her address
        early = await review("not yet in approval", state="generate", due_at=LATE)
        await seeding.assessment(session, early, version=1, approvers=[ADA], at=NOW)
        hidden = await review("approval secret", state="approval", due_at=LATE, clearance=SECRET)
        await seeding.assessment(session, hidden, version=1, approvers=[ADA], at=NOW)

        def document(kind: str, review: Any, recipients: tuple[str, ...] = (ADA, BOB), **fields: Any) -> Any:
            return seeding.published(session, review, kind=kind, recipients=recipients, at=NOW, **fields)

        plan = await document("strategy_plan", source, due_in=timedelta(days=3))
        await document("tactical_plan", source, org_unit="payments", due_in=timedelta(days=-1))
        acked = await document("mission_and_vision", source, due_in=timedelta(days=-1))
        await document("strategy_review", source, due_in=timedelta(days=-1), status="superseded")
        await document("operational_plan", hidden, org_unit="payments", due_in=timedelta(days=1))
        await document("strategy_assessment_report", source, recipients=(BOB,), due_in=timedelta(days=1))
        ids["plan"], ids["acked"] = str(plan.document_id), str(acked.document_id)
    return ids


async def _pending(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/me/pending", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _titles(items: list[dict[str, Any]]) -> list[str]:
    return [item["title"] for item in items]


async def test_my_work_lists_what_waits_on_me_soonest_due_first(app: Harness) -> None:
    ada = await app.person(ADA, Role.APPROVER)
    ids = await _seed(app)
    acknowledged = await ada.post(f"/v1/documents/{ids['acked']}/acknowledgements", json={"version": 1})
    mine = await _pending(ada)
    shown_one = await _pending(ada, limit=1)
    nobody = await _pending(app.api)  # a service account: no person, no work

    assert acknowledged.status_code == 200, acknowledged.text
    assert mine["reviews_owned"] == [
        {
            "id": ids["owned late"],
            "title": "owned late",
            "state": "assess",
            "severity": "high",
            "category": "regulation_update",
            "due_at": LATE.isoformat().replace("+00:00", "Z"),
            "overdue": True,
        },
        {
            "id": ids["owned, policy spelling"],
            "title": "owned, policy spelling",
            "state": "triage",
            "severity": "high",
            "category": "regulation_update",
            "due_at": SOON.isoformat().replace("+00:00", "Z"),
            "overdue": False,
        },
    ]
    assert [(a["title"], a["version"], a["overdue"]) for a in mine["approvals_waiting"]] == [
        ("approval reworked", 2, True),
        ("approval again", 2, False),
    ]
    assert [(d["kind"], d["org_unit"], d["version"], d["overdue"]) for d in mine["documents_to_acknowledge"]] == [
        ("tactical_plan", "payments", 1, True),
        ("strategy_plan", None, 1, False),
    ]
    plan = mine["documents_to_acknowledge"][1]
    assert (plan["document_id"], plan["review_id"], plan["review_title"]) == (ids["plan"], ids["Bob's"], "Bob's")
    assert plan["due_at"] == (NOW + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    assert mine["overdue"] == 3
    assert mine["totals"] == {"reviews_owned": 2, "approvals_waiting": 2, "documents_to_acknowledge": 2}
    assert [len(shown_one[name]) for name in ("reviews_owned", "approvals_waiting", "documents_to_acknowledge")] == [
        1,
        1,
        1,
    ]
    assert (shown_one["overdue"], shown_one["totals"]) == (3, mine["totals"])
    assert nobody["totals"] == {"reviews_owned": 0, "approvals_waiting": 0, "documents_to_acknowledge": 0}


async def test_a_verdict_or_an_acknowledgement_takes_the_item_off_my_work(app: Harness) -> None:
    ada = await app.person(ADA, Role.APPROVER)
    ids = await _seed(app)
    approved = await ada.post(
        f"/v1/reviews/{ids['approval reworked']}/approvals", json={"version": 2, "verdict": "approve"}
    )
    acknowledged = await ada.post(f"/v1/documents/{ids['plan']}/acknowledgements", json={})
    after = await _pending(ada)
    assert approved.status_code == 201, approved.text
    assert acknowledged.status_code == 200, acknowledged.text
    assert _titles(after["approvals_waiting"]) == ["approval again"]
    assert "strategy_plan" not in [d["kind"] for d in after["documents_to_acknowledge"]]


async def test_restricted_work_appears_only_once_i_am_cleared_for_it(app: Harness) -> None:
    ada = await app.person(ADA, Role.APPROVER)
    ids = await _seed(app)
    uncleared = await ada.get("/v1/me/pending")
    cleared_now = await app.api.post(f"/v1/users/{ADA}/clearance", json={"cleared_restricted": True})
    cleared = await _pending(ada)

    assert uncleared.status_code == 200
    for name in ("owned secret", "approval secret"):
        assert ids[name] not in uncleared.text
        assert name not in uncleared.text
    assert "operational_plan" not in uncleared.text
    assert cleared_now.status_code == 200, cleared_now.text
    assert ids["owned secret"] in [r["id"] for r in cleared["reviews_owned"]]
    assert ids["approval secret"] in [a["id"] for a in cleared["approvals_waiting"]]
    assert "operational_plan" in [d["kind"] for d in cleared["documents_to_acknowledge"]]
