"""Recording finished webhook attempts: many outcomes in one transaction (a group commit), off the senders' path.

Senders hand each finished attempt to the `Recorder` and go on with the next claim; the recorder stores what has
finished so far in one transaction (the deliveries' new states in one statement, the attempts log rows in
another, the reviews' next deliveries made ready), and while that commits the next attempts gather for the next
group. A slow receiver's attempt is recorded when it ends and holds up no one else's recording.

A group that cannot be stored is stored again one attempt at a time (then, if need be, without the receiver's
answer), so an outcome the database refuses rolls back no other attempt. When even that fails the database is
taken to be unreachable: the rest of the group is not recorded, its leases run out and those webhooks are sent
again (at least once, with the same `webhook-id`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import UnitOfWork, insert_rows
from services.core.observability import DELIVERIES, get_logger
from services.core.settings import Settings
from services.core.tracing import trace_id_of
from services.notifier.persistence import (
    CHAT,
    AttemptRow,
    NoticeRow,
    Pair,
    SubscriptionRow,
    lock_for_record,
    promote_next,
    release_leases,
    subscriptions_by_id,
    update_attempted,
)
from services.notifier.retries import AttemptResult, DeliveryStatus, Step, next_step

log = get_logger(__name__)

CHAT_PERMANENT = frozenset({400, 403, 404})
"""What Slack (`invalid_payload`, `action_prohibited`, `channel_not_found`, `no_service`) and Teams (a malformed
card, a workflow that is gone or forbidden) answer the same to every retry: the delivery fails at once. A
webhook receiver's 4xx is retried, as before (it may be a deployment in progress)."""

GROUP_MAX = 500
"""Most attempts recorded in one transaction."""


@dataclass(kw_only=True, frozen=True, slots=True)
class Finished:
    """One attempt that has ended (sent, or given up at its deadline), to be recorded."""

    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    review_id: str | None
    msg_id: str
    traceparent: str | None
    outcome: AttemptResult
    at: datetime


Recorded = Callable[[Sequence[uuid.UUID]], None]
"""Told the deliveries whose attempts (or unused leases) were recorded, or given up on: no longer held."""


class Recorder:
    def __init__(self, *, uow: UnitOfWork, settings: Settings, recorded: Recorded) -> None:
        self._uow = uow
        self._settings = settings
        self._recorded = recorded
        self._finished: list[Finished] = []
        self._unused: list[tuple[uuid.UUID, datetime]] = []
        self._more = asyncio.Event()
        self._closing = False

    def add(self, finished: Finished) -> None:
        self._finished.append(finished)
        self._more.set()

    def give_back(self, delivery_id: uuid.UUID, leased_until: datetime) -> None:
        """A claim that will not be sent: its lease is ended with the next group, so it is claimable at once."""
        self._unused.append((delivery_id, leased_until))
        self._more.set()

    def close(self) -> None:
        """Record what has been handed over, then end `run`."""
        self._closing = True
        self._more.set()

    async def run(self) -> None:
        while True:
            if not self._finished and not self._unused:
                if self._closing:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            group, self._finished = self._finished[:GROUP_MAX], self._finished[GROUP_MAX:]
            unused, self._unused = self._unused, []
            await self._record(group, unused)

    async def _record(self, group: list[Finished], unused: list[tuple[uuid.UUID, datetime]]) -> None:
        try:
            async with self._uow.begin() as session:
                await release_leases(session, unused)
                statuses = await self._store(session, group)
            self._done(group, statuses)
        except Exception:
            log.exception("recording webhook attempts failed; recording them one at a time", attempts=len(group))
            await self._record_each(group, unused)
        finally:
            self._recorded([f.delivery_id for f in group] + [delivery_id for delivery_id, _ in unused])

    async def _record_each(self, group: list[Finished], unused: list[tuple[uuid.UUID, datetime]]) -> None:
        """Each attempt in its own transaction, until one cannot be recorded even without its answer: the database
        is then unreachable, and the rest are left to their leases (sent again)."""
        for index, finished in enumerate(group):
            try:
                statuses = await self._store_alone(finished)
            except Exception:
                log.exception(
                    "webhook attempts not recorded; sent again when their leases run out",
                    delivery_ids=[str(f.delivery_id) for f in group[index:]],
                )
                return
            self._done([finished], statuses)
        try:
            async with self._uow.begin() as session:
                await release_leases(session, unused)
        except Exception:
            log.exception("unused leases not ended; they run out", deliveries=len(unused))

    async def _store_alone(self, finished: Finished) -> dict[uuid.UUID, DeliveryStatus | None]:
        try:
            async with self._uow.begin() as session:
                return await self._store(session, [finished])
        except Exception:
            # The answer is already bounded and cleaned, so this should not happen; if it does, keep the
            # attempt (and its effect on the schedule) without the receiver's text.
            log.exception("recording a webhook attempt failed; recording it without the answer")
            outcome = replace(finished.outcome, response=None, error="answer could not be stored", retry_after=None)
            async with self._uow.begin() as session:
                return await self._store(session, [replace(finished, outcome=outcome)])

    async def _store(self, session: AsyncSession, group: Sequence[Finished]) -> dict[uuid.UUID, DeliveryStatus | None]:
        """Each attempt's delivery's status after it (None: the delivery or its subscription is gone)."""
        pairs: set[Pair] = {(f.subscription_id, f.review_id) for f in group if f.review_id is not None}
        counts = await lock_for_record(session, [f.delivery_id for f in group], pairs)
        subscriptions = await subscriptions_by_id(session, {f.subscription_id for f in group})
        statuses: dict[uuid.UUID, DeliveryStatus | None] = {}
        deliveries: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        ended: set[Pair] = set()
        for f in group:
            count, subscription = counts.get(f.delivery_id), subscriptions.get(f.subscription_id)
            if count is None or subscription is None:
                statuses[f.delivery_id] = None
                continue
            step = self._apply(session, subscription, f, attempts=count + 1)
            statuses[f.delivery_id] = step.status
            deliveries.append(
                {
                    "id": f.delivery_id,
                    "attempt_count": count + 1,
                    "last_status_code": f.outcome.status_code,
                    "status": step.status,
                    "next_attempt_at": step.next_attempt_at,
                }
            )
            attempts.append(
                {
                    "delivery_id": f.delivery_id,
                    "attempted_at": f.at,
                    "status_code": f.outcome.status_code,
                    "duration_ms": f.outcome.duration_ms,
                    "response": f.outcome.response,
                    "error": f.outcome.error,
                }
            )
            if step.status is not DeliveryStatus.PENDING and f.review_id is not None:
                ended.add((f.subscription_id, f.review_id))
        await update_attempted(session, deliveries)
        await insert_rows(session, AttemptRow, attempts)
        await session.flush()  # the subscriptions' failure streaks, and any notices
        await promote_next(session, ended)
        return statuses

    def _apply(
        self, session: AsyncSession, subscription: SubscriptionRow, finished: Finished, *, attempts: int
    ) -> Step:
        """One attempt's effect: its delivery's next step, and its subscription's failure streak or enabled flag."""
        outcome, now = finished.outcome, finished.at
        step = next_step(
            outcome,
            attempts=attempts,
            schedule=self._settings.delivery_retry_schedule,
            failing_since=subscription.failing_since,
            now=now,
            disable_after=timedelta(seconds=self._settings.webhook_disable_after_s),
            retry_after_max=timedelta(seconds=self._settings.webhook_retry_after_max_s),
            permanent=CHAT_PERMANENT if subscription.channel in CHAT else (),
        )
        subscription.failing_since = None if outcome.ok else (subscription.failing_since or now)
        if step.disable_reason and subscription.enabled:
            subscription.enabled = False
            subscription.disabled_reason = step.disable_reason
            session.add(
                NoticeRow(
                    subscription_id=subscription.id, type="subscription.disabled", at=now, detail=step.disable_reason
                )
            )
            log.warning("subscription disabled", subscription_id=str(subscription.id), reason=step.disable_reason)
        return step

    def _done(self, group: Sequence[Finished], statuses: dict[uuid.UUID, DeliveryStatus | None]) -> None:
        for f in group:
            status = statuses.get(f.delivery_id)
            DELIVERIES.labels(_label(f.outcome, status)).inc()
            log.info(
                "webhook attempt",
                trace_id=trace_id_of(f.traceparent),
                delivery_id=str(f.delivery_id),
                msg_id=f.msg_id,
                status_code=f.outcome.status_code,
                error=f.outcome.error,
                outcome=status,
            )


def _label(outcome: AttemptResult, status: DeliveryStatus | None) -> str:
    if outcome.ok:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.FAILED if status is DeliveryStatus.FAILED else "retry"
