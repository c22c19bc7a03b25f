"""A review's whole PDCA cycle through the HTTP API on real Postgres: guards, approvals, documents, KPIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.core.identity.model import Role
from services.core.settings import Settings
from services.strategy_engine.persistence import DecidedTriggerRow, ReviewRow
from tests.support.events import accepted, feed_engine
from tests.support.harness import Harness, smits
from tests.support.waiting import eventually

NOW = datetime.now(UTC)
OFFICE, CIO, CFO, CISO = "strategy-office@example.org", "cio@example.org", "cfo@example.org", "ciso@example.org"
IMPACT = {"rating": "high", "statement": "changes the ICT third-party register"}
COMPLETE: dict[str, Any] = {
    "constraints": [
        {
            "title": "budget",
            "type": "financial",
            "severity": "high",
            "mitigation": {"action": "phase the work", "owner": "cfo"},
        }
    ],
    "impact": {"perspective": IMPACT, "position": IMPACT, "plans": IMPACT, "patterns": IMPACT},
    "risk": {"likelihood": 3, "impact": 4, "treatment": "mitigate"},
    "recommendation": {"summary": "adopt", "alternatives": ["defer a year"]},
    "approvers": {"mode": "quorum", "names": [CIO, CFO, CISO], "required": 2},
}


async def _open_reviews(app: Harness, settings: Settings, *regulations: str) -> list[str]:
    docs = [
        accepted(
            "regulation_update",
            f"r-{r}",
            at=NOW,
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
    return [by_key[f"regulation:{r}"] for r in regulations]


async def _move(api: httpx.AsyncClient, review: str, to: str, **extra: Any) -> httpx.Response:
    return await api.post(f"/v1/reviews/{review}/transitions", json={"to": to, **extra})


def _refused(response: httpx.Response, guard: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["guard"] == guard
    assert response.json()["detail"]


async def test_a_review_runs_the_whole_cycle_and_every_guard_speaks_up(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        api = await app.person(OFFICE, Role.STRATEGY_MANAGER)
        cio, cfo, ciso = [await app.person(email, Role.APPROVER) for email in (CIO, CFO, CISO)]
        [review] = await _open_reviews(app, settings, "DORA")
        _refused(await _move(api, review, "assess"), "owner_assigned")
        assert (await api.patch(f"/v1/reviews/{review}", json={"owner": OFFICE})).status_code == 200
        assert (await _move(api, review, "assess")).json()["state"] == "assess"
        _refused(await _move(api, review, "generate"), "assessment_complete")

        partial = await api.post(f"/v1/reviews/{review}/assessments", json={"risk": COMPLETE["risk"]})
        assert partial.json()["complete"] is False
        assert "impact on perspective is not rated" in partial.json()["missing"]
        refusal = await _move(api, review, "generate")
        _refused(refusal, "assessment_complete")
        assert "impact on perspective is not rated" in refusal.json()["detail"]

        v2 = await api.post(f"/v1/reviews/{review}/assessments", json=COMPLETE)
        assert (v2.status_code, v2.json()["version"], v2.json()["complete"], v2.json()["risk_score"]) == (
            201,
            2,
            True,
            12,
        )
        assert (await _move(api, review, "generate")).status_code == 200
        assert (await _move(api, review, "approval")).status_code == 200
        _refused(await _move(api, review, "publish"), "approvals_complete")

        approve = {"verdict": "approve"}
        assert (await cio.post(f"/v1/reviews/{review}/approvals", json={**approve, "version": 2})).json() == {
            "decision": "pending"
        }
        stale = await cfo.post(f"/v1/reviews/{review}/approvals", json={**approve, "version": 1})
        _refused(stale, "current_version")

        # Rework: a new version invalidates the approval given to version 2.
        assert (await _move(api, review, "generate")).status_code == 200
        assert (await api.post(f"/v1/reviews/{review}/assessments", json=COMPLETE)).json()["version"] == 3
        assert (await _move(api, review, "approval")).status_code == 200
        first = await cfo.post(f"/v1/reviews/{review}/approvals", json={**approve, "version": 3})
        assert first.json() == {"decision": "pending"}  # cio's approval of v2 no longer counts
        _refused(await _move(api, review, "publish"), "approvals_complete")
        second = await ciso.post(f"/v1/reviews/{review}/approvals", json={**approve, "version": 3})
        assert second.json() == {"decision": "approved"}
        assert (await _move(api, review, "publish")).status_code == 200

        _refused(await _move(api, review, "execute"), "documents_published")
        plan = {
            "kind": "strategy_plan",
            "title": "IT strategy 2027",
            "summary": "v1",
            "publish": True,
            "certified_by": "cio",
            "distribution": [{"name": CFO}, {"name": "auditor@example.org", "required": False}],
        }
        v1 = await api.post(f"/v1/reviews/{review}/documents", json=plan)
        assert v1.status_code == 201, v1.text
        assert (v1.json()["status"], v1.json()["version"]) == ("published", 1)
        document = v1.json()["document_id"]
        v2doc = await api.post(f"/v1/reviews/{review}/documents", json={**plan, "summary": "v2"})
        assert v2doc.json()["version"] == 2
        ack = await cfo.post(f"/v1/documents/{document}/acknowledgements", json={})
        assert ack.status_code == 200
        assert ack.json()["acknowledged_at"] is not None
        auditor = await app.person("auditor@example.org", Role.VIEWER)  # may only read: still acknowledges
        seen = await auditor.post(f"/v1/documents/{document}/acknowledgements", json={})
        assert seen.status_code == 200, seen.text
        assert (seen.json()["recipient"], seen.json()["recorded_by"]) == ("auditor@example.org",) * 2
        stranger = await (await app.person("stranger@example.org", Role.CONTRIBUTOR)).post(
            f"/v1/documents/{document}/acknowledgements", json={}
        )
        assert stranger.status_code == 404
        versions = (await api.get(f"/v1/documents/{document}")).json()
        assert [v["status"] for v in versions["versions"]] == ["superseded", "published"]
        assert versions["current_version"] == 2

        for state in ("execute", "monitor", "closed"):
            assert (await _move(api, review, state)).json()["state"] == state
        _refused(await _move(api, review, "assess"), "allowed_transition")
        timeline = (await api.get(f"/v1/reviews/{review}/timeline")).json()
        kpis = (await api.get("/v1/kpis")).json()
        detail = (await api.get(f"/v1/reviews/{review}")).json()

    types = [entry["type"] for entry in timeline]
    assert types[0] == "review.opened"
    assert types[-2:] == ["review.transitioned", "review.closed"]
    assert types.count("review.document_published") == 2
    assert types.count("review.approval_recorded") == 3
    assert [entry["sequence"] for entry in timeline] == list(range(1, len(timeline) + 1))
    into_approval = [
        e["data"] for e in timeline if e["type"] == "review.transitioned" and e["data"]["to"] == "approval"
    ]
    assert [data["approvers"] for data in into_approval] == [[CIO, CFO, CISO]] * 2  # the notifier asks each of them
    others = [e["data"] for e in timeline if e["type"] == "review.transitioned" and e["data"]["to"] != "approval"]
    assert others
    assert not any("approvers" in data for data in others)
    assert detail["decision"] == "approved"
    assert detail["assessment"]["version"] == 3
    assert detail["closed_at"] is not None
    assert kpis["approval_rework_rate_pct"] == pytest.approx(50.0)  # one of two entries into approval reworked
    assert kpis["current_copy_holders_pct"] == pytest.approx(100.0)  # cfo (the only required one) holds v2
    assert kpis["trigger_volume_by_category"] == {"regulation_update": 1}
    assert kpis["opened_to_assessment_complete_s"] >= 0
    assert kpis["trigger_to_strategy_published_s"] is not None
    assert kpis["overdue_reviews"] == 0


async def test_merge_relinks_triggers_and_closes_the_merged_review(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        source, target = await _open_reviews(app, settings, "NIS2", "NIS2-guidance")
        api = await app.person(CIO, Role.STRATEGY_MANAGER)
        merged = await api.post(f"/v1/reviews/{source}/merge", json={"into": target})
        into_self = await api.post(f"/v1/reviews/{target}/merge", json={"into": target})
        again = await api.post(f"/v1/reviews/{source}/merge", json={"into": target})
        detail = (await app.api.get(f"/v1/reviews/{target}")).json()
        gone = (await app.api.get(f"/v1/reviews/{source}")).json()
    assert merged.status_code == 200, merged.text
    assert {t["id"] for t in detail["triggers"]} == {"r-NIS2", "r-NIS2-guidance"}
    assert gone["state"] == "merged"
    assert gone["merged_into"] == target
    _refused(into_self, "distinct_reviews")
    _refused(again, "review_open")


async def test_review_filters_overdue_and_cursor_pagination(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        ids = await _open_reviews(app, settings, "A", "B", "C")
        async with app.runtime.uow.begin() as session:
            late = await session.get(ReviewRow, __import__("uuid").UUID(ids[0]))
            assert late is not None
            late.due_at = datetime.now(UTC) - timedelta(hours=1)
        overdue = (await app.api.get("/v1/reviews", params={"overdue": "true"})).json()["items"]
        on_time = (await app.api.get("/v1/reviews", params={"overdue": "false"})).json()["items"]
        first = (await app.api.get("/v1/reviews", params={"limit": 2})).json()
        rest = (await app.api.get("/v1/reviews", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        bad = await app.api.get("/v1/reviews", params={"cursor": "garbage"})
        by_state = (await app.api.get("/v1/reviews", params={"state": "closed"})).json()["items"]
        decisions = await app.count(DecidedTriggerRow)
    assert [r["id"] for r in overdue] == [ids[0]]
    assert overdue[0]["overdue"] is True
    assert {r["id"] for r in on_time} == set(ids[1:])
    assert len(first["items"]) == 2
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert {r["id"] for r in first["items"] + rest["items"]} == set(ids)
    assert bad.status_code == 400
    assert by_state == []
    assert decisions == 3


async def test_tactical_plans_are_per_org_unit_and_counted_as_current(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        [review] = await _open_reviews(app, settings, "PSD3")
        api = await app.person(OFFICE, Role.STRATEGY_MANAGER)
        missing_unit = await api.post(f"/v1/reviews/{review}/documents", json={"kind": "tactical_plan", "title": "t"})
        for unit, publish in (("payments", True), ("lending", False)):
            response = await api.post(
                f"/v1/reviews/{review}/documents",
                json={
                    "kind": "tactical_plan",
                    "org_unit": unit,
                    "title": f"tactical {unit}",
                    "publish": publish,
                    "certified_by": "cio",
                },
            )
            assert response.status_code == 201, response.text
        unpublished = await api.post(
            f"/v1/reviews/{review}/documents", json={"kind": "strategy_plan", "title": "s", "publish": True}
        )
        kpis = (await app.api.get("/v1/kpis")).json()
    assert missing_unit.status_code == 422
    assert missing_unit.json()["field"] == "org_unit"
    assert unpublished.status_code == 422  # publishing needs certified_by
    assert kpis["org_units_with_current_tactical_plan_pct"] == pytest.approx(50.0)


async def test_in_a_sequence_each_approver_is_asked_in_turn(settings: Settings) -> None:
    """The events name whose verdict is awaited (the notifier mails them): entering approval, only the first in the
    sequence; each approval, the next; the last, nobody."""
    async with smits(settings, ["engine"]) as app:
        api = await app.person(OFFICE, Role.STRATEGY_MANAGER)
        cio, cfo = [await app.person(email, Role.APPROVER) for email in (CIO, CFO)]
        [review] = await _open_reviews(app, settings, "NIS2")
        assert (await api.patch(f"/v1/reviews/{review}", json={"owner": OFFICE})).status_code == 200
        assert (await _move(api, review, "assess")).status_code == 200
        body = {**COMPLETE, "approvers": {"mode": "sequence", "names": [CIO, CFO]}}
        version = (await api.post(f"/v1/reviews/{review}/assessments", json=body)).json()["version"]
        for state in ("generate", "approval"):
            assert (await _move(api, review, state)).status_code == 200
        for approver in (cio, cfo):
            verdict = {"verdict": "approve", "version": version}
            assert (await approver.post(f"/v1/reviews/{review}/approvals", json=verdict)).status_code in (200, 201)
        timeline = (await api.get(f"/v1/reviews/{review}/timeline")).json()
    [into] = [e["data"] for e in timeline if e["type"] == "review.transitioned" and e["data"]["to"] == "approval"]
    recorded = [e["data"] for e in timeline if e["type"] == "review.approval_recorded"]
    assert into["approvers"] == [CIO]
    assert [data.get("approvers") for data in recorded] == [[CFO], None]
