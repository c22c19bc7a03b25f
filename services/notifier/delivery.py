"""The delivery worker: claim due deliveries, sign, POST, record the attempt, schedule the retry.

Claims are leases (`locked_until`) taken in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), so
several notifier replicas never send the same attempt at once, and a crashed one's leases expire.
The HTTP call happens outside any transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import or_, select

from services.core.db import UnitOfWork, is_postgres
from services.core.observability import DELIVERIES, get_logger
from services.core.settings import Settings
from services.notifier.egress import EgressRefused, resolve_checked
from services.notifier.flows import DELIVERED, FAILED, PENDING
from services.notifier.persistence import AttemptRow, DeliveryRow, SubscriptionRow
from services.notifier.signing import signature_header

log = get_logger(__name__)

LEASE = timedelta(seconds=60)
RESPONSE_KEEP = 1000

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: uuid.UUID
    msg_id: str
    url: str
    secret: str
    body: str
    attempt_count: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    duration_ms: int
    response: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryWorker:
    def __init__(
        self, *, uow: UnitOfWork, settings: Settings, client: httpx.AsyncClient, clock: Clock | None = None
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        try:
            while not stop.is_set():
                try:
                    claims = await self.claim()
                    await asyncio.gather(*(self.deliver(claim) for claim in claims))
                except Exception:
                    log.exception("delivery round failed; will retry")
                    claims = []
                if not claims:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.delivery_poll_interval_s)
        finally:
            await self._client.aclose()
            log.info("delivery worker stopped")

    async def claim(self) -> list[Claim]:
        now = self._clock()
        async with self._uow.begin() as session:
            query = (
                select(DeliveryRow, SubscriptionRow)
                .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
                .where(
                    DeliveryRow.status == PENDING,
                    DeliveryRow.next_attempt_at <= now,
                    or_(DeliveryRow.locked_until.is_(None), DeliveryRow.locked_until < now),
                    SubscriptionRow.enabled,
                )
                .order_by(DeliveryRow.next_attempt_at)
                .limit(self._settings.delivery_batch_size)
            )
            if is_postgres(session):
                query = query.with_for_update(of=DeliveryRow, skip_locked=True)
            claims = []
            for delivery, subscription in (await session.execute(query)).all():
                delivery.locked_until = now + LEASE
                claims.append(
                    Claim(
                        delivery.id,
                        delivery.msg_id,
                        subscription.url,
                        subscription.secret,
                        delivery.body,
                        delivery.attempt_count,
                    )
                )
        return claims

    async def deliver(self, claim: Claim) -> None:
        outcome = await self._post(claim)
        await self._record(claim, outcome)

    async def _post(self, claim: Claim) -> Outcome:
        started = time.perf_counter()
        try:
            await resolve_checked(claim.url, self._settings.allow_networks)
            timestamp = int(self._clock().timestamp())
            body = claim.body.encode()
            response = await self._client.post(
                claim.url,
                content=body,
                follow_redirects=False,
                timeout=self._settings.delivery_timeout_s,
                headers={
                    "content-type": "application/json",
                    "webhook-id": claim.msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signature_header(
                        [claim.secret], msg_id=claim.msg_id, timestamp=timestamp, body=body
                    ),
                },
            )
            return Outcome(response.status_code, _ms(started), response.text[:RESPONSE_KEEP], None)
        except (httpx.HTTPError, EgressRefused) as exc:
            return Outcome(None, _ms(started), None, f"{type(exc).__name__}: {exc}"[:RESPONSE_KEEP])

    async def _record(self, claim: Claim, outcome: Outcome) -> None:
        now = self._clock()
        schedule = self._settings.delivery_retry_schedule
        async with self._uow.begin() as session:
            delivery = await session.get(DeliveryRow, claim.delivery_id)
            if delivery is None:
                return
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
            delivery.attempt_count += 1
            delivery.last_status_code = outcome.status_code
            delivery.locked_until = None
            if outcome.ok:
                delivery.status, delivery.next_attempt_at = DELIVERED, None
            elif delivery.attempt_count >= len(schedule):
                delivery.status, delivery.next_attempt_at = FAILED, None
            else:
                delivery.next_attempt_at = now + _jittered(schedule[delivery.attempt_count])
        DELIVERIES.labels("delivered" if outcome.ok else "failed_attempt").inc()
        log.info(
            "webhook attempt",
            delivery_id=str(claim.delivery_id),
            msg_id=claim.msg_id,
            status_code=outcome.status_code,
            error=outcome.error,
            ok=outcome.ok,
        )


def _jittered(seconds: float) -> timedelta:
    """Up to 10% random spread so retries of many deliveries do not stampede a recovering receiver."""
    return timedelta(seconds=seconds * (1 + random.uniform(0, 0.1)))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
