"""A batch of `TriggerAccepted` → a stored decision per trigger; reviews opened or attached; events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.reviews import ReviewEventType
from services.core.kafka import Message
from services.core.observability import get_logger
from services.core.tracing import from_headers, span
from services.strategy_engine import persistence
from services.strategy_engine.flows.events import record_event, review_summary, stored_trigger_ref, trigger_ref
from services.strategy_engine.lifecycle import INITIAL
from services.strategy_engine.persistence import ReviewRow, TriggerRow
from services.strategy_engine.policies import (
    Decision,
    OpenReview,
    Outcome,
    Policy,
    PolicySet,
    correlation_key,
    decide,
    select_policy,
)

log = get_logger(__name__)


async def evaluate(session: AsyncSession, policies: PolicySet, trigger: TriggerAcceptedV1) -> Decision:
    """The decision for one trigger given the database as it is (used by the batch flow and the dry-run)."""
    policy = select_policy(policies, trigger)
    key = correlation_key(policy, trigger)
    review = await persistence.open_review(session, key)
    earlier = 0
    if policy.threshold is not None:
        window = policy.threshold.window
        earlier = await persistence.count_in_window(
            session, policy_id=policy.id, key=key, start=trigger.occurred_at - window, end=trigger.occurred_at
        )
    seen = (
        OpenReview(first_trigger_at=review.first_trigger_at, last_trigger_at=review.last_trigger_at) if review else None
    )
    return decide(policy, trigger, key=key, open_review=seen, matching_in_window=earlier)


async def handle_accepted_batch(
    session: AsyncSession, batch: Sequence[Message], *, policies: PolicySet, now: datetime
) -> list[Decision]:
    """Decide each new trigger in order; replays of known triggers change nothing."""
    parsed = [(_parse(message), from_headers(message.headers)) for message in batch]
    triggers = [(trigger, traceparent) for trigger, traceparent in parsed if trigger is not None]
    known = await persistence.known_triggers(session, [(t.source, t.id) for t, _ in triggers])
    decisions = []
    for trigger, traceparent in triggers:
        if (trigger.source, trigger.id) in known:
            continue
        known.add((trigger.source, trigger.id))
        decision = await evaluate(session, policies, trigger)
        with span("engine.decide", traceparent, policy=decision.policy_id, outcome=decision.outcome.value):
            await _apply(session, policies.get(decision.policy_id), trigger, decision, now, traceparent)
        await session.flush()  # later triggers of this batch must see this one's review and row
        decisions.append(decision)
    return decisions


async def _apply(
    session: AsyncSession,
    policy: Policy,
    trigger: TriggerAcceptedV1,
    decision: Decision,
    now: datetime,
    traceparent: str | None,
) -> None:
    review: ReviewRow | None = None
    if decision.outcome is Outcome.OPENED:
        stale = await persistence.open_review(session, decision.correlation_key, lock=True)
        if stale is not None:  # past its windows: it carries on, but new related triggers go to the new one
            stale.open_key = None
            await session.flush()
        review = _open(session, policy, trigger, decision, now)
        await session.flush()
        record_event(
            session,
            review,
            ReviewEventType.OPENED,
            now,
            {**review_summary(review), **_about(trigger)},
            traceparent=traceparent,
        )
        if policy.threshold is not None:
            await _link_waiting(session, policy, trigger, decision, review, now)
    elif decision.outcome is Outcome.ATTACHED:
        review = await persistence.open_review(session, decision.correlation_key, lock=True)
        assert review is not None
        review.last_trigger_at = max(review.last_trigger_at, trigger.occurred_at)
        record_event(session, review, ReviewEventType.TRIGGER_ATTACHED, now, _about(trigger), traceparent=traceparent)
    session.add(_row(trigger, decision, review.id if review else None, now))


async def _link_waiting(
    session: AsyncSession,
    policy: Policy,
    trigger: TriggerAcceptedV1,
    decision: Decision,
    review: ReviewRow,
    now: datetime,
) -> None:
    """The triggers that counted towards the threshold belong to the review they made open."""
    assert policy.threshold is not None
    start = trigger.occurred_at - policy.threshold.window
    for row in await persistence.waiting_triggers(
        session, policy_id=policy.id, key=decision.correlation_key, start=start
    ):
        row.review_id = review.id
        review.first_trigger_at = min(review.first_trigger_at, row.occurred_at)
        record_event(
            session,
            review,
            ReviewEventType.TRIGGER_ATTACHED,
            now,
            stored_trigger_ref(row),
        )


def _open(
    session: AsyncSession, policy: Policy, trigger: TriggerAcceptedV1, decision: Decision, now: datetime
) -> ReviewRow:
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
    )
    session.add(review)
    return review


def _row(trigger: TriggerAcceptedV1, decision: Decision, review_id: uuid.UUID | None, now: datetime) -> TriggerRow:
    return TriggerRow(
        source=trigger.source,
        event_id=trigger.id,
        category=trigger.category.value,
        severity=trigger.severity.value,
        subject=trigger.subject,
        occurred_at=trigger.occurred_at,
        received_at=trigger.received_at,
        data=trigger.data,
        policy_id=decision.policy_id,
        correlation_key=decision.correlation_key,
        outcome=decision.outcome.value,
        reason=decision.reason[:1000],
        review_id=review_id,
        decided_at=now,
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
        subject=trigger.subject,
    )
