"""A batch of `TriggerAccepted` → a stored decision per trigger; reviews opened or attached; events."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.reviews import ReviewEventType
from services.core.db import insert_rows
from services.core.kafka import Message
from services.core.observability import get_logger
from services.core.tracing import from_headers, span
from services.strategy_engine import persistence
from services.strategy_engine.flows.events import (
    count_after_commit,
    event_rows,
    review_summary,
    stored_trigger_ref,
    trigger_ref,
)
from services.strategy_engine.lifecycle import INITIAL
from services.strategy_engine.persistence import (
    DecidedTriggerRow,
    EngineOutboxRow,
    ReviewClearanceRow,
    ReviewRow,
    TimelineRow,
)
from services.strategy_engine.policies import (
    CorrelationOutcome,
    Decision,
    OpenReview,
    Policy,
    PolicySet,
    correlation_key,
    decide,
    select_policy,
)

log = get_logger(__name__)


@dataclass(kw_only=True)
class _Seen:
    """What correlation knows within one batch: the collecting review per key (loaded, locked, or opened in
    this batch) and this batch's new rows (column values, inserted in bulk at the end): trigger rows by
    (policy, key), timeline and outbox rows in order, the types of the events (counted after commit), and
    stored trigger rows to link to a review opened in this batch (once that review is flushed)."""

    reviews: dict[str, ReviewRow]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    timeline: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    types: list[ReviewEventType] = field(default_factory=list)
    links: list[tuple[DecidedTriggerRow, ReviewRow]] = field(default_factory=list)
    clearances: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self,
        review: ReviewRow,
        type_: ReviewEventType,
        now: datetime,
        data: dict[str, Any],
        traceparent: str | None = None,
    ) -> None:
        _, timeline, outbox = event_rows(review, type_, now, data, traceparent=traceparent)
        self.timeline.append(timeline)
        self.outbox.append(outbox)
        self.types.append(type_)


async def evaluate(
    session: AsyncSession, policies: PolicySet, trigger: TriggerAcceptedV1, *, grants: Collection[str]
) -> Decision:
    """The decision for one trigger given the database as it is (the dry-run; reads only), as a caller holding
    `grants` may know it: an open review hidden from them is treated as absent."""
    policy = select_policy(policies, trigger)
    key = correlation_key(policy, trigger)
    reviews = await persistence.open_reviews(session, {key}, grants=grants)
    return await _decide(session, _Seen(reviews=reviews), policy, trigger, key)


async def _decide(session: AsyncSession, seen: _Seen, policy: Policy, trigger: TriggerAcceptedV1, key: str) -> Decision:
    review = seen.reviews.get(key)
    open_review = (
        OpenReview(first_trigger_at=review.first_trigger_at, last_trigger_at=review.last_trigger_at) if review else None
    )
    threshold = policy.threshold
    assumed = threshold.count if threshold else 0
    decision = decide(policy, trigger, key=key, open_review=open_review, matching_in_window=assumed)
    if threshold is None or decision.outcome is not CorrelationOutcome.OPENED:
        return decision
    # Only a trigger that would open a review needs the count of earlier ones in the threshold window.
    start, end = trigger.occurred_at - threshold.window, trigger.occurred_at
    stored = await persistence.count_in_window(session, policy_id=policy.id, key=key, start=start, end=end)
    pending = sum(1 for row in seen.rows[(policy.id, key)] if start <= row["occurred_at"] <= end)
    return decide(policy, trigger, key=key, open_review=open_review, matching_in_window=stored + pending)


async def handle_accepted_batch(
    session: AsyncSession, batch: Sequence[Message], *, policies: PolicySet, now: datetime
) -> list[Decision]:
    """Decide each new trigger in order; replays of known triggers change nothing.

    The batch's open reviews are read (and locked) in one query; decisions are taken in memory in input
    order, each seeing the reviews and rows of the earlier ones; reviews are flushed once, then the
    trigger, timeline and outbox rows are inserted in bulk."""
    parsed = [(_parse(message), from_headers(message.headers)) for message in batch]
    triggers = [(trigger, traceparent) for trigger, traceparent in parsed if trigger is not None]
    known = await persistence.known_triggers(session, [(t.source, t.id) for t, _ in triggers])
    planned = []
    for trigger, traceparent in triggers:
        if (trigger.source, trigger.id) in known:
            continue
        known.add((trigger.source, trigger.id))
        policy = select_policy(policies, trigger)
        planned.append((trigger, traceparent, policy, correlation_key(policy, trigger)))
    seen = _Seen(reviews=await persistence.open_reviews(session, {key for *_, key in planned}, lock=True))
    decisions = []
    for trigger, traceparent, policy, key in planned:
        decision = await _decide(session, seen, policy, trigger, key)
        with span("engine.decide", traceparent, policy=decision.policy_id, outcome=decision.outcome.value):
            await _apply(session, seen, policy, trigger, decision, now, traceparent)
        decisions.append(decision)
    await session.flush()  # reviews first: the rows below refer to them
    if seen.links:
        # The ORM knows no dependency between these tables (no relationship()), so it would flush unrelated
        # mappers in name order; linking only now makes the reviews exist first whatever the classes are called.
        for stored, review in seen.links:
            stored.review_id = review.id
        await session.flush()
    await insert_rows(session, ReviewClearanceRow, seen.clearances)
    await insert_rows(session, DecidedTriggerRow, [row for rows in seen.rows.values() for row in rows])
    await insert_rows(session, TimelineRow, seen.timeline)
    await insert_rows(session, EngineOutboxRow, seen.outbox)
    count_after_commit(session, seen.types)
    return decisions


async def _apply(
    session: AsyncSession,
    seen: _Seen,
    policy: Policy,
    trigger: TriggerAcceptedV1,
    decision: Decision,
    now: datetime,
    traceparent: str | None,
) -> None:
    key = decision.correlation_key
    review: ReviewRow | None = None
    if decision.outcome is CorrelationOutcome.OPENED:
        stale = seen.reviews.get(key)
        if stale is not None:  # past its windows: it carries on, but new related triggers go to the new one
            stale.open_key = None  # flushed as an UPDATE before the new review's INSERT
        review = seen.reviews[key] = _open(session, policy, trigger, decision, now)
        seen.clearances += [{"review_id": review.id, "grant": grant} for grant in sorted(set(policy.restricted_to))]
        seen.event(review, ReviewEventType.OPENED, now, {**review_summary(review), **_about(trigger)}, traceparent)
        if policy.threshold is not None:
            await _link_waiting(session, seen, policy, trigger, review, now)
    elif decision.outcome is CorrelationOutcome.ATTACHED:
        review = seen.reviews[key]
        review.last_trigger_at = max(review.last_trigger_at, trigger.occurred_at)
        seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, _about(trigger), traceparent)
    seen.rows[(policy.id, key)].append(_row(trigger, decision, review.id if review else None, now))


async def _link_waiting(
    session: AsyncSession, seen: _Seen, policy: Policy, trigger: TriggerAcceptedV1, review: ReviewRow, now: datetime
) -> None:
    """The triggers that counted towards the threshold belong to the review they made open."""
    assert policy.threshold is not None
    key = review.correlation_key
    start = trigger.occurred_at - policy.threshold.window
    for stored in await persistence.waiting_triggers(session, policy_id=policy.id, key=key, start=start):
        seen.links.append((stored, review))
        review.first_trigger_at = min(review.first_trigger_at, stored.occurred_at)
        seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, stored_trigger_ref(stored))
    for row in seen.rows[(policy.id, key)]:
        if row["review_id"] is None and row["occurred_at"] >= start:
            row["review_id"] = review.id
            review.first_trigger_at = min(review.first_trigger_at, row["occurred_at"])
            seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, _ref(row))


def _open(
    session: AsyncSession, policy: Policy, trigger: TriggerAcceptedV1, decision: Decision, now: datetime
) -> ReviewRow:
    """A new review, added to the session (inserted at the batch's flush)."""
    due = policy.due_in(INITIAL)
    review = ReviewRow(
        id=uuid.uuid4(),
        correlation_key=decision.correlation_key,
        open_key=decision.correlation_key,
        policy_id=policy.id,
        title=_title(trigger),
        category=trigger.category.value,
        severity=decision.severity.value,
        scope=trigger.subject,
        state=INITIAL.value,
        owner=policy.owner,
        opened_at=now,
        phase_entered_at=now,
        due_at=now + due if due else None,
        escalate_after_s=policy.escalate_after.total_seconds(),
        escalate_at=now + due + policy.escalate_after if due else None,
        first_trigger_at=trigger.occurred_at,
        last_trigger_at=trigger.occurred_at,
        event_sequence=0,
        restricted=bool(policy.restricted_to),
    )
    session.add(review)
    return review


def _row(trigger: TriggerAcceptedV1, decision: Decision, review_id: uuid.UUID | None, now: datetime) -> dict[str, Any]:
    """Column values of the trigger's `engine_triggers` row."""
    return {
        "source": trigger.source,
        "event_id": trigger.id,
        "category": trigger.category.value,
        "severity": trigger.severity.value,
        "subject": trigger.subject,
        "occurred_at": trigger.occurred_at,
        "received_at": trigger.received_at,
        "data": trigger.data,
        "policy_id": decision.policy_id,
        "correlation_key": decision.correlation_key,
        "outcome": decision.outcome.value,
        "reason": decision.reason[:1000],
        "review_id": review_id,
        "decided_at": now,
    }


def _ref(row: dict[str, Any]) -> dict[str, Any]:
    return trigger_ref(
        source=row["source"],
        event_id=row["event_id"],
        category=row["category"],
        severity=row["severity"],
        scope=row["subject"],
    )


def _parse(message: Message) -> TriggerAcceptedV1 | None:
    try:
        return TriggerAcceptedV1.model_validate_json(message.value or b"")
    except ValidationError as exc:
        # Only ingest writes this topic; a bad record is a bug to see, not a reason to stop the engine.
        log.error(
            "unreadable TriggerAccepted skipped", partition=message.partition, offset=message.offset, error=str(exc)
        )
        return None


def _title(trigger: TriggerAcceptedV1) -> str:
    label = trigger.data.get("title") or trigger.data.get("counterparty") or trigger.subject
    return f"{trigger.category.value.replace('_', ' ')}: {label}"[:600]


def _about(trigger: TriggerAcceptedV1) -> dict[str, Any]:
    return trigger_ref(
        source=trigger.source,
        event_id=trigger.id,
        category=trigger.category.value,
        severity=trigger.severity.value,
        scope=trigger.subject,
    )
