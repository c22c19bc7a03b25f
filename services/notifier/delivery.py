"""The delivery worker: claim due deliveries, sign, POST, record the attempt, decide what comes next.

Claims are leases (`locked_until`) taken in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), so
notifier replicas never send the same attempt at once and a crashed one's leases simply expire. A delivery
is claimable only when `ready`: no earlier event of the same review is still pending for the same
subscription (set when planned; the next one is made ready when its predecessor stops being pending, in
the transaction that records that), so one review's webhooks reach a subscriber in event order. The HTTP
calls happen outside any transaction; a round's outcomes are recorded in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import UnitOfWork, is_postgres
from services.core.observability import DELIVERIES, get_logger
from services.core.settings import Settings
from services.core.tracing import TRACEPARENT, trace_id_of
from services.notifier.egress import EgressRefused
from services.notifier.persistence import AttemptRow, DeliveryRow, NoticeRow, Pair, SubscriptionRow, promote_next
from services.notifier.retries import DELIVERED, FAILED, PENDING, Outcome, RateLimiter, Step, next_step
from services.notifier.signing import signature_header

log = get_logger(__name__)

RESPONSE_KEEP = 1000

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    msg_id: str
    url: str
    secrets: tuple[str, ...]
    body: str
    rate_limit_per_s: float | None
    traceparent: str | None
    review_id: str | None


class DeliveryWorker:
    def __init__(
        self, *, uow: UnitOfWork, settings: Settings, client: httpx.AsyncClient, clock: Clock | None = None
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._limiters: dict[uuid.UUID, RateLimiter] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now (e.g. the consumer just planned some) instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    claims = await self.claim()
                    if claims:
                        await self.deliver(claims)
                except Exception:
                    log.exception("delivery round failed; will retry")
                    claims = []
                if not claims:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.delivery_poll_interval_s)
        finally:
            await self._client.aclose()
            log.info("delivery worker stopped")

    async def claim(self) -> list[Claim]:
        now = self._clock()
        query = (
            select(DeliveryRow, SubscriptionRow)
            .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
            .where(
                DeliveryRow.status == PENDING,
                DeliveryRow.ready,
                DeliveryRow.next_attempt_at <= now,
                or_(DeliveryRow.locked_until.is_(None), DeliveryRow.locked_until < now),
                and_(SubscriptionRow.enabled, SubscriptionRow.deleted_at.is_(None)),
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.sequence)
            .limit(self._settings.delivery_batch_size)
        )
        async with self._uow.begin() as session:
            if is_postgres(session):
                query = query.with_for_update(of=DeliveryRow, skip_locked=True)
            claims = []
            for delivery, subscription in (await session.execute(query)).all():
                delivery.locked_until = now + timedelta(seconds=self._settings.delivery_lease_s)
                claims.append(
                    Claim(
                        delivery.id,
                        subscription.id,
                        delivery.msg_id,
                        subscription.url,
                        tuple(subscription.signing_secrets(now)),
                        delivery.body,
                        subscription.rate_limit_per_s,
                        delivery.traceparent,
                        delivery.review_id,
                    )
                )
        return claims

    async def deliver(self, claims: Sequence[Claim]) -> None:
        """POST the claimed deliveries (`delivery_concurrency` at a time), then record every outcome in one
        transaction."""
        gate = asyncio.Semaphore(self._settings.delivery_concurrency)

        async def post(claim: Claim) -> tuple[Claim, Outcome]:
            async with gate:
                if claim.rate_limit_per_s:
                    limiter = self._limiters.get(claim.subscription_id)
                    if limiter is None or limiter.rate != claim.rate_limit_per_s:
                        limiter = self._limiters[claim.subscription_id] = RateLimiter(claim.rate_limit_per_s)
                    await limiter.acquire()
                return claim, await self._post(claim)

        await self._record(await asyncio.gather(*(post(claim) for claim in claims)))

    async def _post(self, claim: Claim) -> Outcome:
        started = time.perf_counter()
        timestamp = int(self._clock().timestamp())
        body = claim.body.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "smits-webhooks/1",
            "webhook-id": claim.msg_id,
            "webhook-timestamp": str(timestamp),
            **({TRACEPARENT: claim.traceparent} if claim.traceparent else {}),
            "webhook-signature": signature_header(
                list(claim.secrets), msg_id=claim.msg_id, timestamp=timestamp, body=body
            ),
        }
        try:
            response = await self._client.post(
                claim.url, content=body, headers=headers, timeout=self._settings.delivery_timeout_s
            )
        except (httpx.HTTPError, EgressRefused, OSError) as exc:
            return Outcome(None, _ms(started), None, f"{type(exc).__name__}: {exc}"[:RESPONSE_KEEP], None)
        return Outcome(
            response.status_code,
            _ms(started),
            response.text[:RESPONSE_KEEP],
            None,
            response.headers.get("retry-after"),
        )

    async def _record(self, results: Sequence[tuple[Claim, Outcome]]) -> None:
        now = self._clock()
        logged = []
        finished: set[Pair] = set()
        async with self._uow.begin() as session:
            deliveries = await _lock_for_record(session, [claim for claim, _ in results])
            subscriptions = {
                row.id: row
                for row in await session.scalars(
                    select(SubscriptionRow).where(
                        SubscriptionRow.id.in_({claim.subscription_id for claim, _ in results})
                    )
                )
            }
            for claim, outcome in results:
                delivery = deliveries.get(claim.delivery_id)
                subscription = subscriptions.get(claim.subscription_id)
                if delivery is not None and subscription is not None:
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
                    logged.append((claim, outcome, step.status))
                    if step.status != PENDING and delivery.review_id is not None:
                        finished.add((delivery.subscription_id, delivery.review_id))
            await session.flush()
            await promote_next(session, finished)
        for claim, outcome, status in logged:
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

    def _apply(
        self,
        session: AsyncSession,
        delivery: DeliveryRow,
        subscription: SubscriptionRow,
        outcome: Outcome,
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
                DeliveryRow.status == PENDING,
                tuple_(DeliveryRow.subscription_id, DeliveryRow.review_id).in_(pairs),
            ),
        )
    )
    if is_postgres(session):
        query = query.order_by(DeliveryRow.id).with_for_update()
    wanted = {claim.delivery_id for claim in claims}
    return {row.id: row for row in await session.scalars(query) if row.id in wanted}


def _label(outcome: Outcome, status: str) -> str:
    if outcome.ok:
        return DELIVERED
    return FAILED if status == FAILED else "retry"


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
