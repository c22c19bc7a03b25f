"""Policies on the real broker and Postgres: correlation, the hard cap, N-of-M, dry-run parity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.core.settings import Settings
from services.strategy_engine.persistence import DecidedTriggerRow, ReviewRow
from tests.support.events import DORA, accepted, feed_engine
from tests.support.harness import Harness, smits
from tests.support.waiting import eventually

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def count_is(expected: int) -> Callable[[int], bool]:
    return lambda count: count == expected


async def _decisions(app: Harness) -> dict[str, DecidedTriggerRow]:
    async with app.runtime.uow.begin() as session:
        return {row.event_id: row for row in (await session.scalars(select(DecidedTriggerRow))).all()}


async def test_same_regulation_correlates_and_a_trigger_after_the_hard_cap_opens_a_new_review(
    settings: Settings,
) -> None:
    # The bundled regulation-update policy: grouping window 60 d, hard cap 180 d from the first trigger.
    docs = [
        accepted("regulation_update", "r1", at=T0, subject="bu-payments", **DORA),
        accepted("regulation_update", "r2", at=T0 + timedelta(days=40), subject="bu-lending", **DORA),
        accepted("regulation_update", "r3", at=T0 + timedelta(days=95), subject="bu-cards", **DORA),
        accepted("regulation_update", "r4", at=T0 + timedelta(days=181), subject="bu-cards", **DORA),
    ]
    async with smits(settings, ["engine"]) as app:
        for doc in docs:  # one at a time: each decision depends on the previous ones
            await feed_engine(settings, [doc])
            await eventually(lambda: app.count(DecidedTriggerRow), count_is(int(doc["id"][1])), what=doc["id"])
        decided = await _decisions(app)
        reviews = (await app.api.get("/v1/reviews")).json()["items"]
        decision = await app.api.get("/v1/decisions//tests/r4")
    assert [decided[k].outcome for k in ("r1", "r2", "r3", "r4")] == ["opened", "attached", "attached", "opened"]
    assert decided["r1"].review_id == decided["r2"].review_id == decided["r3"].review_id != decided["r4"].review_id
    assert len(reviews) == 2
    assert {r["correlation_key"] for r in reviews} == {"regulation:DORA"}
    assert decision.status_code == 200
    assert decision.json()["outcome"] == "opened"
    assert "attach window" in decision.json()["reason"]
    assert decision.json()["policy_id"] == "regulation-update"


async def test_customer_feedback_opens_a_review_only_at_the_third_in_thirty_days(settings: Settings) -> None:
    feedback = {"customer": "Retail", "channel": "survey", "metric": "csat", "value": "2.1"}
    docs = [
        accepted("customer_feedback", "f1", at=T0, subject="svc-mail", severity="low", **feedback),
        accepted("customer_feedback", "f2", at=T0 + timedelta(days=40), subject="svc-mail", severity="low", **feedback),
        accepted("customer_feedback", "f3", at=T0 + timedelta(days=50), subject="svc-mail", severity="low", **feedback),
        accepted("customer_feedback", "f4", at=T0 + timedelta(days=60), subject="svc-mail", severity="low", **feedback),
        accepted("customer_feedback", "f5", at=T0 + timedelta(days=61), subject="svc-mail", severity="low", **feedback),
    ]
    async with smits(settings, ["engine"]) as app:
        for doc in docs:
            await feed_engine(settings, [doc])
            await eventually(lambda: app.count(DecidedTriggerRow), count_is(int(doc["id"][1])), what=doc["id"])
        decided = await _decisions(app)
        reviews = await app.count(ReviewRow)
        timeline = (await app.api.get(f"/v1/reviews/{decided['f4'].review_id}/timeline")).json()
    # f1 is alone in its window; f2, f3 are 2 of 3; f4 is the 3rd within 30 days → opens; f5 attaches.
    assert [decided[f"f{n}"].outcome for n in range(1, 6)] == ["recorded", "recorded", "recorded", "opened", "attached"]
    assert "below threshold" in decided["f3"].reason
    assert reviews == 1
    review_id = decided["f4"].review_id
    assert decided["f2"].review_id == decided["f3"].review_id == decided["f5"].review_id == review_id
    assert decided["f1"].review_id is None  # outside the window: not linked
    assert [entry["type"] for entry in timeline] == [
        "review.opened",
        "review.trigger_attached",
        "review.trigger_attached",
        "review.trigger_attached",
    ]


async def test_dry_run_predicts_the_decision_the_engine_then_takes(settings: Settings) -> None:
    minor = {"finding_id": "F-2", "engagement_id": "ENG-1", "origin": "internal", "finding_severity": "low"}
    serious = {**minor, "finding_id": "F-1", "finding_severity": "critical"}
    docs = [
        accepted("audit_finding", "a1", at=T0, severity="low", **minor),  # attach only, nothing open: recorded
        accepted("audit_finding", "a2", at=T0 + timedelta(days=1), severity="critical", **serious),  # opens
        accepted("audit_finding", "a3", at=T0 + timedelta(days=2), severity="low", **minor),  # attaches
        accepted("goal_change", "g1", at=T0, objective_id="O", period="2027-Q1", new_target="t", owner="cio"),
    ]
    predictions: list[dict[str, Any]] = []
    async with smits(settings, ["engine"]) as app:
        for n, doc in enumerate(docs, start=1):
            predicted = await app.api.post("/v1/policies/dry-run", json=doc)
            assert predicted.status_code == 200, predicted.text
            predictions.append(predicted.json())
            assert await app.count(DecidedTriggerRow) == n - 1  # the dry-run stored nothing
            await feed_engine(settings, [doc])
            await eventually(lambda: app.count(DecidedTriggerRow), count_is(n), what=doc["id"])
        decided = await _decisions(app)
    for doc, prediction in zip(docs, predictions, strict=True):
        actual = decided[doc["id"]]
        assert (
            prediction["policy_id"],
            prediction["correlation_key"],
            prediction["outcome"],
            prediction["reason"],
        ) == (actual.policy_id, actual.correlation_key, actual.outcome, actual.reason)
        if prediction["outcome"] == "attached":
            assert prediction["review_id"] == str(actual.review_id)
    assert [p["outcome"] for p in predictions] == ["recorded", "opened", "attached", "opened"]
    assert predictions[0]["policy_id"] == "audit-finding-minor"


async def test_dry_run_refuses_what_could_not_be_stored(settings: Settings) -> None:
    base = accepted("goal_change", "g1", at=T0, objective_id="O", period="Q1", new_target="t", owner="cio")
    async with smits(settings, ["engine"]) as app:
        nul = await app.api.post("/v1/policies/dry-run", json={**base, "subject": "bu\x00"})
        nul_in_data = await app.api.post("/v1/policies/dry-run", json={**base, "data": {"owner": "c\x00o"}})
        too_long = await app.api.post("/v1/policies/dry-run", json={**base, "id": "x" * 501})
    for response, status in ((nul, 400), (nul_in_data, 400), (too_long, 422)):  # NUL: the request guard
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_dry_run_refuses_huge_integers_only_if_invalid_and_far_away_times(settings: Settings) -> None:
    base = accepted("goal_change", "g1", at=T0, objective_id="O", period="Q1", new_target="t", owner="cio")
    async with smits(settings, ["engine"]) as app:
        big = await app.api.post(
            "/v1/policies/dry-run",
            content=b'{"kind": "TriggerAccepted", "version": 1, '
            b'"source": "/s", "id": "1", "type": "t", "category": "goal_change", '
            b'"severity": "low", "subject": "s", "occurred_at": "2026-01-01T00:00:00Z", '
            b'"received_at": "2026-01-01T00:00:00Z", "data": {"n": -36893488147419103233}}',
            headers={"content-type": "application/json"},
        )
        ancient = await app.api.post("/v1/policies/dry-run", json={**base, "occurred_at": "0403-02-21T01:10:18Z"})
    assert big.status_code == 200, big.text  # a big number in data is fine; only a crash would not be
    assert ancient.status_code == 422
