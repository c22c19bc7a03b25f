"""The e-mail worker: claim due e-mail deliveries, hand each to the mail server, record the attempt, decide what
comes next, on the same rows, schedule and attempts log as webhooks (`delivery.py`).

Claims are leases (`locked_until`) taken in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), so
replicas never send the same attempt at once and a crashed one's leases expire. Each claimed e-mail is sent by
its own task and its outcome recorded in its own transaction. A mail server that refuses (4xx, 5xx) or cannot be
reached loses nothing: the delivery stays pending and is tried again on `SMITS_DELIVERY_RETRY_SCHEDULE`; it fails
only when the schedule is exhausted (then `POST /v1/deliveries/{id}/resend` sends it again). The message and its
`Message-ID` were fixed when it was planned, so a retry that reached the server twice shows once in a mail client.

A worker never claims again an e-mail it is still sending or recording (its lease may have run out meanwhile), and
never starts a send its lease could not cover.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.core.db import UnitOfWork
from services.core.observability import MAILS, get_logger
from services.core.settings import Settings
from services.notifier.claiming import claim_until_stopped
from services.notifier.persistence import AttemptRow, due_mail, locked_delivery
from services.notifier.retries import AttemptResult, DeliveryStatus, next_step
from services.notifier.smtp import MailServer, send

log = get_logger(__name__)

Clock = Callable[[], datetime]
Sender = Callable[..., Awaitable[AttemptResult]]


@dataclass(frozen=True, slots=True)
class MailClaim:
    delivery_id: uuid.UUID
    recipient: str
    message: str
    leased_until: datetime


class MailWorker:
    """At most `delivery_subscription_concurrency` e-mails in flight: the mail server is one receiver."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        settings: Settings,
        server: MailServer,
        clock: Clock | None = None,
        sender: Sender = send,
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._server = server
        self._clock = clock or (lambda: datetime.now(UTC))
        self._send = sender
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[uuid.UUID] = set()  # e-mails this worker is sending or recording (never claimed twice)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("e-mail worker started", smtp_host=self._server.host, smtp_port=self._server.port)
        try:
            poll_s = self._settings.delivery_poll_interval_s
            await claim_until_stopped(what="e-mails", dispatch=self.dispatch, wake=self._wake, poll_s=poll_s, stop=stop)
            await asyncio.gather(*self._tasks, return_exceptions=True)  # started sends end within their deadline
        finally:
            for task in self._tasks:
                task.cancel()
            log.info("e-mail worker stopped")

    async def dispatch(self) -> bool:
        """Claim what free slots allow and start a task per claim; True if it should look again at once."""
        free = self._settings.delivery_subscription_concurrency - len(self._tasks)
        if free <= 0:
            return False
        claims = await self.claim(free)
        for claim in claims:
            self._held.add(claim.delivery_id)
            task = asyncio.create_task(self.deliver(claim), name=f"e-mail {claim.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, claim.delivery_id))
        return len(claims) == free

    def _finished(self, delivery_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._held.discard(delivery_id)
        self._wake.set()  # a slot is free

    async def claim(self, limit: int) -> list[MailClaim]:
        now = self._clock()
        async with self._uow.begin() as session:
            rows = await due_mail(session, now=now, limit=limit, held=self._held)
            lease_end = now + timedelta(seconds=self._settings.delivery_lease_s)
            for row in rows:
                row.locked_until = lease_end
            return [MailClaim(row.id, row.recipient or "", row.body, lease_end) for row in rows]

    async def deliver(self, claim: MailClaim) -> None:
        """Send one claimed e-mail and record the attempt; nothing here can disturb another delivery."""
        if self._clock() + timedelta(seconds=self._settings.delivery_timeout_s) >= claim.leased_until:
            # Started late (a stalled loop): the lease could run out mid-send and another replica send it too.
            log.warning("e-mail claim too old to send; left to be claimed again", delivery_id=str(claim.delivery_id))
            return
        outcome = await self._send(self._server, recipient=claim.recipient, message=claim.message)
        try:
            status = await self._record(claim, outcome)
        except Exception:  # the database is unreachable: the lease expires and the e-mail is tried again
            log.exception("e-mail attempt not recorded", delivery_id=str(claim.delivery_id))
            return
        MAILS.labels(status or "gone").inc()
        log.info(
            "e-mail attempt",
            delivery_id=str(claim.delivery_id),
            status_code=outcome.status_code,
            error=outcome.error,
            outcome=status,
        )

    async def _record(self, claim: MailClaim, outcome: AttemptResult) -> DeliveryStatus | None:
        now = self._clock()
        async with self._uow.begin() as session:
            delivery = await locked_delivery(session, claim.delivery_id)
            if delivery is None:
                return None
            delivery.attempt_count += 1
            delivery.last_status_code = outcome.status_code
            delivery.locked_until = None
            step = next_step(
                outcome,
                attempts=delivery.attempt_count,
                schedule=self._settings.delivery_retry_schedule,
                failing_since=None,  # a mail server is not disabled like a webhook endpoint
                now=now,
                disable_after=timedelta(seconds=self._settings.webhook_disable_after_s),
                retry_after_max=timedelta(seconds=self._settings.webhook_retry_after_max_s),
            )
            delivery.status, delivery.next_attempt_at = step.status, step.next_attempt_at
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
            return step.status
