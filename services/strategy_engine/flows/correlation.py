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
from services.core.db import table_of
from services.core.kafka import Message
from services.core.observability import get_logger
from services.core.outbox import OutboxRecord, StoredRecord, add_to_outbox
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
from services.strategy_engine.persistence_bulk import insert_all
from services.strategy_engine.persistence_correlation import (
    CollectingReview,
    WaitingTrigger,
    Window,
    collecting_reviews,
    counts_in_windows,
    link_triggers,
    plan_for_parameters,
    update_reviews,
    waiting_triggers,
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

Pair = tuple[str, str]
"""A policy id and a correlation key."""


@dataclass(kw_only=True)
class _Seen:
    """What correlation knows within one batch: the collecting review per key (read and locked, or opened in
    this batch); what the batch's threshold policies need from the database, read up front (`counts` per
    window, and the `waiting` triggers of each pair from `waiting_since` on); and this batch's changes, written
    set-based at the end: reviews opened (their columns) or changed, stored triggers linked to a review, new
    trigger rows by pair, clearances, timeline and outbox rows in order, and the types of the events (counted
    after commit)."""

    reviews: dict[str, CollectingReview]
    counts: dict[Window, int] = field(default_factory=dict)
    waiting: dict[Pair, list[WaitingTrigger]] = field(default_factory=dict)
    waiting_since: dict[Pair, datetime] = field(default_factory=dict)
    opened: dict[uuid.UUID, tuple[CollectingReview, dict[str, Any]]] = field(default_factory=dict)
    changed: dict[uuid.UUID, CollectingReview] = field(default_factory=dict)
    links: dict[int, uuid.UUID] = field(default_factory=dict)
    rows: dict[Pair, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    clearances: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    types: list[ReviewEventType] = field(default_factory=list)

    def event(
        self,
        review: CollectingReview,
        type_: ReviewEventType,
        now: datetime,
        data: dict[str, Any],
        traceparent: str | None = None,
    ) -> None:
        timeline, outbox = event_rows(review, type_, now, data, traceparent=traceparent)
        self.timeline.append(timeline)
        self.outbox.append(outbox)
        self.types.append(type_)
        self.changing(review)

    def changing(self, review: CollectingReview) -> None:
        if review.id not in self.opened:
            self.changed[review.id] = review


async def evaluate(
    session: AsyncSession, policies: PolicySet, trigger: TriggerAcceptedV1, *, grants: Collection[str]
) -> Decision:
    """The decision for one trigger given the database as it is (the dry-run; reads only), as a caller holding
    `grants` may know it: an open review hidden from them is treated as absent."""
    policy = select_policy(policies, trigger)
    key = correlation_key(policy, trigger)
    reviews = await collecting_reviews(session, {key}, grants=grants)
    return await _decide(session, _Seen(reviews=reviews), policy, trigger, key)


def _window(policy: Policy, trigger: TriggerAcceptedV1, key: str) -> Window:
    """The threshold window ending at the trigger: what decides whether it opens a review."""
    assert policy.threshold is not None
    start = trigger.occurred_at - policy.threshold.window
    return Window(policy_id=policy.id, key=key, start=start, end=trigger.occurred_at)


def _seen_as_open(review: CollectingReview | None) -> OpenReview | None:
    return (
        OpenReview(first_trigger_at=review.first_trigger_at, last_trigger_at=review.last_trigger_at) if review else None
    )


def _decide_assuming(policy: Policy, trigger: TriggerAcceptedV1, key: str, review: CollectingReview | None) -> Decision:
    """The decision if the threshold (if any) were reached: only a trigger that would then open a review needs
    the count of earlier ones in its window."""
    assumed = policy.threshold.count if policy.threshold else 0
    return decide(policy, trigger, key=key, open_review=_seen_as_open(review), matching_in_window=assumed)


async def _decide(session: AsyncSession, seen: _Seen, policy: Policy, trigger: TriggerAcceptedV1, key: str) -> Decision:
    review = seen.reviews.get(key)
    decision = _decide_assuming(policy, trigger, key, review)
    if policy.threshold is None or decision.outcome is not CorrelationOutcome.OPENED:
        return decision
    window = _window(policy, trigger, key)
    stored = seen.counts.get(window)
    if stored is None:  # not read up front (the dry-run, or a review that went stale within the batch)
        stored = (await counts_in_windows(session, [window]))[window]
    pending = sum(1 for row in seen.rows[(policy.id, key)] if window.start <= row["occurred_at"] <= window.end)
    return decide(policy, trigger, key=key, open_review=_seen_as_open(review), matching_in_window=stored + pending)


async def _read_ahead(
    session: AsyncSession, seen: _Seen, planned: Sequence[tuple[TriggerAcceptedV1, Policy, str]]
) -> None:
    """Ask once for the whole batch what its threshold decisions need: the count of each window of a trigger
    that may open a review, and the waiting triggers that review would take."""
    windows: list[Window] = []
    for trigger, policy, key in planned:
        if policy.threshold is None:
            continue
        if _decide_assuming(policy, trigger, key, seen.reviews.get(key)).outcome is CorrelationOutcome.OPENED:
            window = _window(policy, trigger, key)
            windows.append(window)
            pair = (policy.id, key)
            seen.waiting_since[pair] = min(window.start, seen.waiting_since.get(pair, window.start))
    seen.counts = await counts_in_windows(session, windows)
    for stored in await waiting_triggers(session, seen.waiting_since):
        seen.waiting.setdefault((stored.policy_id, stored.correlation_key), []).append(stored)


@dataclass(kw_only=True, frozen=True)
class CorrelatedBatch:
    """What a batch decided, and the review events it stored in the outbox (to hand to the relay once committed)."""

    decisions: list[Decision]
    outbox: list[StoredRecord]


async def handle_accepted_batch(
    session: AsyncSession, batch: Sequence[Message], *, policies: PolicySet, now: datetime
) -> CorrelatedBatch:
    """Decide each new trigger in order; replays of known triggers change nothing.

    A fixed number of statements per batch: the known triggers, the batch's collecting reviews (read and
    locked in one query) and what its thresholds need are read first; decisions are taken in memory in input
    order, each seeing the reviews and rows of the earlier ones; then each table is written once."""
    parsed = [(_parse(message), from_headers(message.headers)) for message in batch]
    triggers = [(trigger, traceparent) for trigger, traceparent in parsed if trigger is not None]
    await plan_for_parameters(session)
    known = await persistence.known_triggers(session, [(t.source, t.id) for t, _ in triggers])
    planned = []
    for trigger, traceparent in triggers:
        if (trigger.source, trigger.id) in known:
            continue
        known.add((trigger.source, trigger.id))
        policy = select_policy(policies, trigger)
        planned.append((trigger, traceparent, policy, correlation_key(policy, trigger)))
    seen = _Seen(reviews=await collecting_reviews(session, {key for *_, key in planned}, lock=True))
    await _read_ahead(session, seen, [(trigger, policy, key) for trigger, _, policy, key in planned])
    decisions = []
    for trigger, traceparent, policy, key in planned:
        decision = await _decide(session, seen, policy, trigger, key)
        with span("engine.decide", traceparent, policy=decision.policy_id, outcome=decision.outcome.value):
            await _apply(session, seen, policy, trigger, decision, now, traceparent)
        decisions.append(decision)
    outbox = await _store(session, seen, now)
    count_after_commit(session, seen.types)
    return CorrelatedBatch(decisions=decisions, outbox=outbox)


async def _store(session: AsyncSession, seen: _Seen, now: datetime) -> list[StoredRecord]:
    """Write the batch's changes, each table once; returns the outbox records as stored. Reviews that existed
    first: a stale one frees its key before a new review takes it; the new reviews before the rows that refer to
    them."""
    await update_reviews(session, list(seen.changed.values()))
    opened = [
        {
            **columns,
            "open_key": review.open_key,
            "first_trigger_at": review.first_trigger_at,
            "last_trigger_at": review.last_trigger_at,
            "event_sequence": review.event_sequence,
        }
        for review, columns in seen.opened.values()
    ]
    await insert_all(session, table_of(ReviewRow), opened)
    await link_triggers(session, seen.links)
    await insert_all(session, table_of(ReviewClearanceRow), seen.clearances)
    await insert_all(session, table_of(DecidedTriggerRow), [row for rows in seen.rows.values() for row in rows])
    await insert_all(session, table_of(TimelineRow), seen.timeline)
    return await add_to_outbox(session, EngineOutboxRow, seen.outbox, now=now)


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
    review: CollectingReview | None = None
    if decision.outcome is CorrelationOutcome.OPENED:
        stale = seen.reviews.get(key)
        if stale is not None:  # past its windows: it carries on, but new related triggers go to the new one
            stale.open_key = None  # stored before the new review, which takes the key
            seen.changing(stale)
        columns = _open(policy, trigger, decision, now)
        review = seen.reviews[key] = _collecting(columns)
        seen.opened[review.id] = (review, columns)
        seen.clearances += [{"review_id": review.id, "grant": grant} for grant in sorted(set(policy.restricted_to))]
        seen.event(review, ReviewEventType.OPENED, now, {**review_summary(columns), **_about(trigger)}, traceparent)
        if policy.threshold is not None:
            await _link_waiting(session, seen, policy, trigger, review, now)
    elif decision.outcome is CorrelationOutcome.ATTACHED:
        review = seen.reviews[key]
        review.last_trigger_at = max(review.last_trigger_at, trigger.occurred_at)
        seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, _about(trigger), traceparent)
    seen.rows[(policy.id, key)].append(_row(trigger, decision, review.id if review else None, now))


async def _waiting(session: AsyncSession, seen: _Seen, pair: Pair, start: datetime) -> list[WaitingTrigger]:
    """Stored triggers of `pair` from `start` on that no review has taken (nor one opened earlier in the batch)."""
    since = seen.waiting_since.get(pair)
    if since is not None and since <= start:
        found = [stored for stored in seen.waiting.get(pair, []) if stored.occurred_at >= start]
    else:  # not read up front (a review that went stale within the batch)
        found = await waiting_triggers(session, {pair: start})
    return [stored for stored in found if stored.id not in seen.links]


async def _link_waiting(
    session: AsyncSession,
    seen: _Seen,
    policy: Policy,
    trigger: TriggerAcceptedV1,
    review: CollectingReview,
    now: datetime,
) -> None:
    """The triggers that counted towards the threshold belong to the review they made open."""
    assert policy.threshold is not None
    key = review.correlation_key
    start = trigger.occurred_at - policy.threshold.window
    for stored in await _waiting(session, seen, (policy.id, key), start):
        seen.links[stored.id] = review.id
        review.first_trigger_at = min(review.first_trigger_at, stored.occurred_at)
        seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, stored_trigger_ref(stored))
    for row in seen.rows[(policy.id, key)]:
        if row["review_id"] is None and row["occurred_at"] >= start:
            row["review_id"] = review.id
            review.first_trigger_at = min(review.first_trigger_at, row["occurred_at"])
            seen.event(review, ReviewEventType.TRIGGER_ATTACHED, now, _ref(row))


def _open(policy: Policy, trigger: TriggerAcceptedV1, decision: Decision, now: datetime) -> dict[str, Any]:
    """Column values of a new review (inserted when the batch is stored, with its trigger times and event
    sequence as the batch leaves them)."""
    due = policy.due_in(INITIAL)
    return {
        "id": uuid.uuid4(),
        "correlation_key": decision.correlation_key,
        "open_key": decision.correlation_key,
        "policy_id": policy.id,
        "title": _title(trigger),
        "category": trigger.category.value,
        "severity": decision.severity.value,
        "scope": trigger.subject,
        "state": INITIAL.value,
        "owner": policy.owner,
        "opened_at": now,
        "phase_entered_at": now,
        "due_at": now + due if due else None,
        "escalate_after_s": policy.escalate_after.total_seconds(),
        "escalate_at": now + due + policy.escalate_after if due else None,
        "first_trigger_at": trigger.occurred_at,
        "last_trigger_at": trigger.occurred_at,
        "event_sequence": 0,
        "restricted": bool(policy.restricted_to),
        "timers_armed": False,
    }


def _collecting(columns: dict[str, Any]) -> CollectingReview:
    return CollectingReview(
        id=columns["id"],
        correlation_key=columns["correlation_key"],
        open_key=columns["open_key"],
        category=columns["category"],
        severity=columns["severity"],
        scope=columns["scope"],
        restricted=columns["restricted"],
        first_trigger_at=columns["first_trigger_at"],
        last_trigger_at=columns["last_trigger_at"],
        event_sequence=columns["event_sequence"],
    )


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
