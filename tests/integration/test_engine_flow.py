"""The engine's batch flow called directly on a real Postgres database with constructed messages: correlation,
the hard cap, the N-of-M threshold, batch boundaries and replays, in milliseconds and without Kafka or polling."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.core.db import UnitOfWork
from services.core.kafka import Message
from services.strategy_engine.flows.correlation import handle_accepted_batch
from services.strategy_engine.persistence import DecidedTriggerRow, EngineOutboxRow, ReviewRow, TimelineRow
from services.strategy_engine.policies import PolicySet, load
from tests.support.events import DORA, accepted

T0 = datetime(2026, 9, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 23, tzinfo=UTC)
FEEDBACK = {"customer": "Retail", "channel": "survey", "metric": "csat", "value": "2.1"}
POLICIES: PolicySet = load()


def messages(documents: Sequence[dict[str, Any]], *, first_offset: int = 0) -> list[Message]:
    return [
        Message(
            topic="t.triggers.accepted",
            partition=0,
            offset=first_offset + n,
            key=doc["subject"].encode(),
            value=orjson.dumps(doc),
            headers=(),
            timestamp_ms=0,
        )
        for n, doc in enumerate(documents)
    ]


async def run(uow: UnitOfWork, documents: Sequence[dict[str, Any]], *, per_batch: int | None = None) -> None:
    """Feed `documents` to the flow, one transaction per batch of `per_batch` (default: all in one batch)."""
    size = per_batch or len(documents)
    for start in range(0, len(documents), size):
        async with uow.begin() as session:
            await handle_accepted_batch(
                session, messages(documents[start : start + size], first_offset=start), policies=POLICIES, now=NOW
            )


async def decisions(uow: UnitOfWork) -> dict[str, DecidedTriggerRow]:
    async with uow.begin() as session:
        return {row.event_id: row for row in (await session.scalars(select(DecidedTriggerRow))).all()}


async def counts(uow: UnitOfWork) -> tuple[int, ...]:
    async with uow.begin() as session:
        tables = (DecidedTriggerRow, ReviewRow, TimelineRow, EngineOutboxRow)
        return tuple([await session.scalar(select(func.count()).select_from(table)) or 0 for table in tables])


REGULATION = [
    accepted("regulation_update", "r1", at=T0, subject="bu-payments", **DORA),
    accepted("regulation_update", "r2", at=T0 + timedelta(days=40), subject="bu-lending", **DORA),
    accepted("regulation_update", "r3", at=T0 + timedelta(days=95), subject="bu-cards", **DORA),
    accepted("regulation_update", "r4", at=T0 + timedelta(days=181), subject="bu-cards", **DORA),
]


@pytest.mark.parametrize("per_batch", [1, 2, 4], ids=["one-per-batch", "two-per-batch", "one-batch"])
async def test_correlation_and_the_hard_cap_do_not_depend_on_batch_boundaries(uow: UnitOfWork, per_batch: int) -> None:
    await run(uow, REGULATION, per_batch=per_batch)
    decided = await decisions(uow)
    assert [decided[k].outcome for k in ("r1", "r2", "r3", "r4")] == ["opened", "attached", "attached", "opened"]
    assert decided["r1"].review_id == decided["r2"].review_id == decided["r3"].review_id != decided["r4"].review_id
    assert "attach window" in (decided["r4"].reason or "")
    async with uow.begin() as session:
        keys = (await session.scalars(select(ReviewRow.correlation_key))).all()
    assert keys == ["regulation:DORA", "regulation:DORA"]


@pytest.mark.parametrize("per_batch", [1, 5], ids=["one-per-batch", "one-batch"])
async def test_feedback_opens_a_review_only_at_the_third_in_thirty_days(uow: UnitOfWork, per_batch: int) -> None:
    days = (0, 40, 50, 60, 61)
    docs = [
        accepted(
            "customer_feedback", f"f{n}", at=T0 + timedelta(days=d), subject="svc-mail", severity="low", **FEEDBACK
        )
        for n, d in enumerate(days, start=1)
    ]
    await run(uow, docs, per_batch=per_batch)
    decided = await decisions(uow)
    assert [decided[f"f{n}"].outcome for n in range(1, 6)] == ["recorded", "recorded", "recorded", "opened", "attached"]
    assert "below threshold" in (decided["f3"].reason or "")
    review_id = decided["f4"].review_id
    assert review_id is not None
    assert decided["f2"].review_id == decided["f3"].review_id == decided["f5"].review_id == review_id
    assert decided["f1"].review_id is None  # outside the window: not linked
    async with uow.begin() as session:
        timeline = (
            await session.scalars(
                select(TimelineRow.type).where(TimelineRow.review_id == review_id).order_by(TimelineRow.sequence)
            )
        ).all()
    assert timeline == ["review.opened", *["review.trigger_attached"] * 3]


@pytest.mark.parametrize("per_batch", [1, 6], ids=["one-per-batch", "one-batch"])
async def test_a_waiting_trigger_goes_to_the_first_review_that_takes_it(uow: UnitOfWork, per_batch: int) -> None:
    # `w` waits (recorded, below the threshold). The third of a1..a3 opens review A, which takes `w` (the waiting
    # triggers from its window's start on, later ones included). A is stale for b1..b3 (more than 30 days after
    # its last trigger), so b3 opens review B, whose window also reaches `w`: `w` stays A's, whether A and B
    # open in one batch or in two.
    def feedback(name: str, day: int) -> dict[str, Any]:
        at = T0 + timedelta(days=day)
        return accepted("customer_feedback", name, at=at, subject="svc-mail", severity="low", **FEEDBACK)

    await run(uow, [feedback("w", 200)])
    later = [feedback(name, day) for name, day in (("a1", 100), ("a2", 101), ("a3", 102))]
    later += [feedback(name, day) for name, day in (("b1", 180), ("b2", 181), ("b3", 182))]
    await run(uow, later, per_batch=per_batch)
    decided = await decisions(uow)
    assert [decided[name].outcome for name in ("a3", "b3")] == ["opened", "opened"]
    first, second = decided["a3"].review_id, decided["b3"].review_id
    assert decided["w"].review_id == decided["a1"].review_id == decided["a2"].review_id == first
    assert decided["b1"].review_id == decided["b2"].review_id == second != first
    async with uow.begin() as session:
        attached = (
            await session.execute(
                select(TimelineRow.review_id, TimelineRow.data["trigger"]["id"].as_string()).where(
                    TimelineRow.type == "review.trigger_attached"
                )
            )
        ).all()
    assert sorted((review == first, name) for review, name in attached) == [
        (False, "b1"),
        (False, "b2"),
        (True, "a1"),
        (True, "a2"),
        (True, "w"),
    ]


def _mixed(run: str, seed: int, count: int) -> list[dict[str, Any]]:
    """`count` triggers over a few keys and 400 days, out of time order: thresholds reached and missed, reviews
    going stale (windows, hard cap) and replaced, attach-only policies recording; the keys are the run's own."""
    rng = random.Random(seed)
    docs = []
    for n in range(count):
        at, k = T0 + timedelta(days=rng.randrange(400), seconds=rng.randrange(86_400)), rng.randrange(3)
        kind = rng.choice(["feedback", "feedback", "regulation", "audit", "budget"])
        severity = rng.choice(["low", "high"])
        if kind == "feedback":
            doc = accepted("customer_feedback", f"{run}{n}", at=at, subject=f"{run}-svc{k}", severity="low", **FEEDBACK)
        elif kind == "regulation":
            doc = accepted("regulation_update", f"{run}{n}", at=at, regulation_id=f"{run}-R{k}", title="t")
        elif kind == "audit":
            doc = accepted("audit_finding", f"{run}{n}", at=at, severity=severity, engagement_id=f"{run}-E{k}")
        else:
            doc = accepted("budget_change", f"{run}{n}", at=at, severity=severity, budget_id=f"{run}-B{k}")
        docs.append(doc)
    return docs


async def _outcome(uow: UnitOfWork, run: str) -> tuple[list[tuple[str, ...]], list[tuple[Any, ...]]]:
    """The run's decisions (review named by the trigger that opened it) and each review's trigger times,
    sequence and timeline, all with the run's prefix taken out."""
    decided = {k: row for k, row in (await decisions(uow)).items() if k.startswith(run)}
    opener = {row.review_id: k for k, row in decided.items() if row.outcome == "opened"}

    def strip(text: str) -> str:
        return text.replace(run, "")

    def named(event: TimelineRow) -> str:
        return strip(orjson.dumps({**event.data, "review_id": opener[event.review_id]}).decode())

    triggers: list[tuple[str, ...]] = sorted(
        (strip(k), row.outcome, strip(row.reason), strip(row.correlation_key), strip(opener.get(row.review_id, "-")))
        for k, row in decided.items()
    )
    async with uow.begin() as session:
        reviews = (await session.scalars(select(ReviewRow).where(ReviewRow.id.in_(list(opener))))).all()
        events = (await session.execute(select(TimelineRow).where(TimelineRow.review_id.in_(list(opener))))).all()
    timeline = sorted((strip(opener[t.review_id]), t.type, named(t)) for (t,) in events)
    summary = sorted(
        (strip(opener[r.id]), r.open_key is None, r.first_trigger_at, r.last_trigger_at, r.event_sequence)
        for r in reviews
    )
    return triggers, [*summary, *timeline]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_mixed_triggers_decide_alike_in_any_batches(uow: UnitOfWork, seed: int) -> None:
    # The reference: one trigger per batch (every decision sees all earlier ones stored). The same triggers in
    # random batch sizes must give the same decisions, reviews, trigger times, event counts and timelines.
    await run(uow, _mixed("one", seed, 150), per_batch=1)
    docs, sizes = _mixed("any", seed, 150), random.Random(seed)
    start = 0
    while start < len(docs):
        size = sizes.choice([2, 7, 30, 150])
        await run(uow, docs[start : start + size])
        start += size
    one, any_ = await _outcome(uow, "one"), await _outcome(uow, "any")
    assert one[0] == any_[0]
    assert sum(outcome == "opened" for _, outcome, *_ in one[0]) >= 10
    assert one[1] == any_[1]


async def test_a_replayed_batch_and_a_repeat_within_a_batch_change_nothing(uow: UnitOfWork) -> None:
    await run(uow, REGULATION[:2])
    before = await counts(uow)
    await run(uow, REGULATION[:2])  # the same records again (a redelivery)
    await run(uow, [REGULATION[2], REGULATION[2]])  # one new trigger, twice in its batch
    after = await counts(uow)
    decided = await decisions(uow)
    assert before == (2, 1, 2, 2)  # triggers, reviews, timeline, outbox: opened + attached
    assert after == (3, 1, 3, 3)  # only r3 was added, once
    assert decided["r3"].outcome == "attached"


async def test_events_of_one_review_leave_in_decision_order(uow: UnitOfWork) -> None:
    await run(uow, REGULATION[:3])
    async with uow.begin() as session:
        outbox = (await session.scalars(select(EngineOutboxRow).order_by(EngineOutboxRow.id))).all()
    events = [orjson.loads(row.value) for row in outbox]
    assert [event["type"] for event in events] == [
        "review.opened",
        "review.trigger_attached",
        "review.trigger_attached",
    ]
    assert [event["sequence"] for event in events] == sorted(event["sequence"] for event in events)
    assert len({row.key for row in outbox}) == 1  # keyed by the review: one partition, in order


def _counted(type_: str) -> float:
    return REGISTRY.get_sample_value("smits_reviews_events_total", {"type": type_}) or 0.0


async def test_review_events_are_counted_after_commit_only(uow: UnitOfWork) -> None:
    before = _counted("review.opened")

    async def fail_before_commit() -> None:
        async with uow.begin() as session:
            await handle_accepted_batch(session, messages(REGULATION[:1]), policies=POLICIES, now=NOW)
            assert _counted("review.opened") == before  # built, not yet committed
            raise RuntimeError("the batch fails before its commit")

    with pytest.raises(RuntimeError):
        await fail_before_commit()
    assert _counted("review.opened") == before
    assert await counts(uow) == (0, 0, 0, 0)
    await run(uow, REGULATION[:1])
    assert _counted("review.opened") == before + 1
