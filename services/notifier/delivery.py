"""The delivery worker: claim due deliveries, sign (a webhook; a Slack or Teams message is not signed), POST,
record the attempt, decide what comes next.

Claims are leases (`locked_until`) taken in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), so
notifier replicas never send the same attempt at once and a crashed one's leases simply expire. A delivery
is claimable only when `ready`: no earlier event of the same review is still pending for the same
subscription (set when planned; the next one is made ready when its predecessor stops being pending, in
the transaction that records that), so one review's webhooks reach a subscriber in event order.

A worker never claims again a delivery it is still sending or recording (its lease may have run out meanwhile),
and never starts a send its lease could not cover.

Deliveries are independent: each claimed one is POSTed by its own task (under `sending.post`'s total
deadline) and its outcome recorded in its own transaction, so a slow or hostile receiver holds only its
own slots and an outcome that cannot be recorded rolls back nothing else. A subscription has at most
`delivery_subscription_concurrency` of this worker's `delivery_concurrency` slots; a rate-limited one
waiting for its pace is simply not claimed meanwhile (never slept on).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import UnitOfWork, is_postgres
from services.core.observability import DELIVERIES, get_logger
from services.core.settings import Settings
from services.core.tracing import TRACEPARENT, trace_id_of
from services.notifier.claiming import claim_until_stopped
from services.notifier.egress import WebhookClient
from services.notifier.persistence import (
    CHAT,
    AttemptRow,
    DeliveryRow,
    NoticeRow,
    SubscriptionRow,
    next_due,
    promote_next,
)
from services.notifier.redaction import hidden
from services.notifier.retries import AttemptResult, DeliveryStatus, Step, SubscriptionPace, next_step
from services.notifier.sending import RESPONSE_KEEP, Request, post
from services.notifier.signing import signature_header

__all__ = ["RESPONSE_KEEP", "Claim", "DeliveryWorker"]

log = get_logger(__name__)

Clock = Callable[[], datetime]


CHAT_PERMANENT = frozenset({400, 403, 404})
"""What Slack (`invalid_payload`, `action_prohibited`, `channel_not_found`, `no_service`) and Teams (a malformed
card, a workflow that is gone or forbidden) answer the same to every retry: the delivery fails at once. A
webhook receiver's 4xx is retried, as before (it may be a deployment in progress)."""


@dataclass(kw_only=True, frozen=True, slots=True)
class Claim:
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    msg_id: str
    channel: str
    url: str
    secrets: tuple[str, ...]
    body: str
    rate_limit_per_s: float | None
    traceparent: str | None
    review_id: str | None
    leased_until: datetime


def reserved_slots(concurrency: int) -> int:
    """Slots only a subscription with nothing in flight may take, so slow receivers holding slots (each at
    most its own cap) cannot leave every other subscriber waiting for one."""
    return max(1, concurrency // 5)


class DeliveryWorker:
    def __init__(
        self, *, uow: UnitOfWork, settings: Settings, client: WebhookClient, clock: Clock | None = None
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._paces: dict[uuid.UUID, SubscriptionPace] = {}
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._held: set[uuid.UUID] = set()  # deliveries this worker is sending or recording (never claimed twice)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for due deliveries now (e.g. the consumer just planned some) instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        try:
            poll_s = self._settings.delivery_poll_interval_s
            await claim_until_stopped(
                what="deliveries", dispatch=self.dispatch, wake=self._wake, poll_s=poll_s, stop=stop
            )
            # Drain: every started POST ends within its deadline and is recorded (no resend after a stop).
            self._stopping = True
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for task in self._tasks:  # cancelled mid-loop (past the grace period): their leases expire
                task.cancel()
            await self._client.aclose()
            log.info("delivery worker stopped")

    async def dispatch(self) -> bool:
        """Claim what free slots allow and start a task per claim; True if it should look again at once."""
        free = self._settings.delivery_concurrency - len(self._tasks)
        if free <= 0:
            return False
        claims, looked = await self.claim(free)
        for claim in claims:
            self._start(claim)
        return looked

    async def claim(self, limit: int) -> tuple[list[Claim], bool]:
        """Lease up to `limit` due deliveries, none of a subscription whose slots are taken or whose pace
        says wait; also whether any due delivery was seen (skipped ones are claimable at the next look)."""
        now = self._clock()
        self._paces = {sid: pace for sid, pace in self._paces.items() if pace.wait() > 0}  # forget idle ones
        cap = self._settings.delivery_subscription_concurrency
        held = {sid for sid, n in self._in_flight.items() if n >= cap} | set(self._paces)
        query = (
            select(DeliveryRow, SubscriptionRow)
            .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
            .where(
                DeliveryRow.status == DeliveryStatus.PENDING,
                DeliveryRow.ready,
                DeliveryRow.next_attempt_at <= now,
                or_(DeliveryRow.locked_until.is_(None), DeliveryRow.locked_until < now),
                and_(SubscriptionRow.enabled, SubscriptionRow.deleted_at.is_(None)),
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.sequence)
            .limit(self._settings.delivery_batch_size)
        )
        if held:
            query = query.where(DeliveryRow.subscription_id.not_in(held))
        if self._held:  # a lease that ran out while its send is still being recorded is still ours
            query = query.where(DeliveryRow.id.not_in(self._held))
        taken = Counter(self._in_flight)
        reserve = reserved_slots(self._settings.delivery_concurrency)
        claims: list[Claim] = []
        async with self._uow.begin() as session:
            if is_postgres(session):
                query = query.with_for_update(of=DeliveryRow, skip_locked=True)
            rows = (await session.execute(query)).all()
            for delivery, subscription in rows:
                if len(claims) >= limit:
                    break
                if taken[subscription.id] >= cap:
                    continue
                if taken[subscription.id] and limit - len(claims) - 1 < reserve:
                    continue  # the last free slots are kept for subscriptions with nothing in flight
                if not self._paced(subscription):
                    continue
                taken[subscription.id] += 1
                delivery.locked_until = self._lease_end(now)
                claims.append(_claim_of(delivery, subscription, now))
        return claims, bool(rows)

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.delivery_lease_s)

    def _paced(self, subscription: SubscriptionRow) -> bool:
        """Whether the subscription's rate limit allows a send now (and if so, count it)."""
        rate = subscription.rate_limit_per_s
        if not rate:
            return True
        pace = self._paces.get(subscription.id)
        if pace is None or pace.rate != rate:
            pace = self._paces[subscription.id] = SubscriptionPace(rate)
        if pace.wait() > 0:
            return False
        pace.take()
        return True

    def _start(self, claim: Claim) -> None:
        self._in_flight[claim.subscription_id] += 1
        self._held.add(claim.delivery_id)
        task = asyncio.create_task(self._deliver(claim), name=f"webhook {claim.delivery_id}")
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._in_flight[claim.subscription_id] -= 1
            if self._in_flight[claim.subscription_id] <= 0:
                del self._in_flight[claim.subscription_id]
            self._wake.set()  # a slot is free

        task.add_done_callback(finished)

    async def _deliver(self, claim: Claim | None) -> None:
        """POST one claim and record its outcome on its own; nothing here can disturb another delivery.
        When that ends the delivery and its review's next one is due, go on with it in the same slot (a
        review's webhooks would otherwise each wait for a claim)."""
        while claim is not None:
            current = claim
            self._held.add(current.delivery_id)  # also a successor, going on in this slot
            try:
                claim = await self._attempt(current)
            finally:
                self._held.discard(current.delivery_id)

    async def _attempt(self, claim: Claim) -> Claim | None:
        now = self._clock()
        if now + timedelta(seconds=self._settings.delivery_timeout_s) >= claim.leased_until:
            # Started late (a stalled loop): the lease could run out mid-send and another replica send it too.
            log.warning("webhook claim too old to send; left to be claimed again", delivery_id=str(claim.delivery_id))
            return None
        timestamp = int(now.timestamp())
        outcome = await post(self._client, _request(claim, timestamp), deadline_s=self._settings.delivery_timeout_s)
        if claim.channel in CHAT:
            outcome = _without_url(outcome, claim.url)
        try:
            try:
                status, successor = await self._record(claim, outcome)
            except Exception:
                # The answer is already bounded and cleaned, so this should not happen; if it does, keep
                # the attempt (and its effect on the schedule) without the receiver's text.
                log.exception("recording a webhook attempt failed; recording it without the answer")
                outcome = AttemptResult(
                    status_code=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    response=None,
                    error="answer could not be stored",
                    retry_after=None,
                )
                status, successor = await self._record(claim, outcome)
        except Exception:  # the database is unreachable: the lease expires and the delivery is tried again
            log.exception("webhook attempt not recorded", delivery_id=str(claim.delivery_id))
            return None
        DELIVERIES.labels(_label(outcome, status)).inc()
        log.info(
            "webhook attempt",
            trace_id=trace_id_of(claim.traceparent),
            delivery_id=str(claim.delivery_id),
            msg_id=claim.msg_id,
            status_code=outcome.status_code,
            error=outcome.error,
            outcome=status,
        )
        return successor

    async def _record(self, claim: Claim, outcome: AttemptResult) -> tuple[DeliveryStatus | None, Claim | None]:
        """One attempt in one transaction: its delivery's status after it (None: the row is gone) and,
        if it ended the delivery, its review's next delivery, leased, when that is due and may be sent now."""
        now = self._clock()
        async with self._uow.begin() as session:
            delivery = (await _lock_for_record(session, [claim])).get(claim.delivery_id)
            subscription = await session.get(SubscriptionRow, claim.subscription_id)
            if delivery is None or subscription is None:
                return None, None
            step = self._apply(session, delivery, subscription, outcome, now)
            session.add(
                AttemptRow(
                    delivery_id=delivery.id,
                    attempted_at=now,
                    status_code=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    response=outcome.response,
                    error=outcome.error,
                )
            )
            await session.flush()
            if step.status is DeliveryStatus.PENDING or delivery.review_id is None:
                return step.status, None
            pair = (claim.subscription_id, delivery.review_id)
            await promote_next(session, {pair})
            if self._stopping or not (subscription.enabled and subscription.deleted_at is None):
                return step.status, None
            successor = await next_due(session, pair, now=now)  # locked above, with the pair's other rows
            if successor is None or not self._paced(subscription):
                return step.status, None
            successor.locked_until = self._lease_end(now)
            return step.status, _claim_of(successor, subscription, now)

    def _apply(
        self,
        session: AsyncSession,
        delivery: DeliveryRow,
        subscription: SubscriptionRow,
        outcome: AttemptResult,
        now: datetime,
    ) -> Step:
        """One attempt's effect on its delivery (and on its subscription's failure streak or enabled flag)."""
        delivery.attempt_count += 1
        delivery.last_status_code = outcome.status_code
        delivery.locked_until = None
        step = next_step(
            outcome,
            attempts=delivery.attempt_count,
            schedule=self._settings.delivery_retry_schedule,
            failing_since=subscription.failing_since,
            now=now,
            disable_after=timedelta(seconds=self._settings.webhook_disable_after_s),
            retry_after_max=timedelta(seconds=self._settings.webhook_retry_after_max_s),
            permanent=CHAT_PERMANENT if subscription.channel in CHAT else (),
        )
        delivery.status, delivery.next_attempt_at = step.status, step.next_attempt_at
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


async def _lock_for_record(session: AsyncSession, claims: Sequence[Claim]) -> dict[uuid.UUID, DeliveryRow]:
    """The claimed deliveries, locked together with the other pending deliveries of their reviews (the
    successors `promote_next` may make ready), all at once in id order, as planning locks them: the two
    cannot deadlock."""
    pairs = {(claim.subscription_id, claim.review_id) for claim in claims if claim.review_id is not None}
    query = select(DeliveryRow).where(
        or_(
            DeliveryRow.id.in_([claim.delivery_id for claim in claims]),
            and_(
                DeliveryRow.status == DeliveryStatus.PENDING,
                tuple_(DeliveryRow.subscription_id, DeliveryRow.review_id).in_(pairs),
            ),
        )
    )
    if is_postgres(session):
        query = query.order_by(DeliveryRow.id).with_for_update()
    wanted = {claim.delivery_id for claim in claims}
    return {row.id: row for row in await session.scalars(query) if row.id in wanted}


def _claim_of(delivery: DeliveryRow, subscription: SubscriptionRow, now: datetime) -> Claim:
    if delivery.locked_until is None:
        raise ValueError("a claim is taken on a leased delivery")
    return Claim(
        delivery_id=delivery.id,
        subscription_id=subscription.id,
        msg_id=delivery.msg_id,
        channel=subscription.channel,
        url=subscription.url,
        secrets=tuple(subscription.signing_secrets(now)),
        body=delivery.body,
        rate_limit_per_s=subscription.rate_limit_per_s,
        traceparent=delivery.traceparent,
        review_id=delivery.review_id,
        leased_until=delivery.locked_until,
    )


def _request(claim: Claim, timestamp: int) -> Request:
    body = claim.body.encode()
    if claim.channel in CHAT:  # Slack and Teams take a plain JSON POST: the URL is the credential
        return Request(claim.url, body, {"content-type": "application/json", "user-agent": "smits-chat/1"})
    headers = {
        "content-type": "application/json",
        "user-agent": "smits-webhooks/1",
        "webhook-id": claim.msg_id,
        "webhook-timestamp": str(timestamp),
        **({TRACEPARENT: claim.traceparent} if claim.traceparent else {}),
        "webhook-signature": signature_header(list(claim.secrets), msg_id=claim.msg_id, timestamp=timestamp, body=body),
    }
    return Request(claim.url, body, headers)


def _without_url(outcome: AttemptResult, url: str) -> AttemptResult:
    """A chat attempt as it is logged and stored: an error or answer quoting the URL (its credential) does not."""
    return replace(
        outcome,
        response=hidden(outcome.response, url) if outcome.response else outcome.response,
        error=hidden(outcome.error, url) if outcome.error else outcome.error,
    )


def _label(outcome: AttemptResult, status: DeliveryStatus | None) -> str:
    if outcome.ok:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.FAILED if status is DeliveryStatus.FAILED else "retry"
