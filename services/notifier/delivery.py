"""The delivery worker: claim due deliveries, sign (a webhook; a Slack or Teams message is not signed), POST,
record the attempt, decide what comes next. Three parts run side by side, so the HTTP client never waits for the
database:
- the claimer leases due deliveries in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), ahead of the
  senders, as far as `slots.SendSlots` allows;
- senders: each claim is POSTed by its own task (under `sending.post`'s total deadline) as soon as a slot is
  free, and its outcome handed to the recorder; the slot then takes the next claim at once;
- the recorder (`recording.Recorder`) stores finished attempts in groups, one transaction per group, and makes
  each review's next delivery ready.

Claims are leases (`locked_until`), so notifier replicas never send the same attempt at once and a crashed one's
leases simply expire. A delivery is claimable only when `ready`: no earlier event of the same review is still
pending for the same subscription (set when planned; the next one is made ready when its predecessor stops
being pending, in the transaction that records that), so one review's webhooks reach a subscriber in event order.

A worker never claims again a delivery it is still holding (claimed and waiting, sending, or recording; its lease
may have run out meanwhile), and never starts a send its lease could not cover. Deliveries are independent: a
slow or hostile receiver holds only its own slots (a subscription has at most `delivery_subscription_concurrency`
of this worker's `delivery_concurrency`), and a rate-limited one waiting for its pace is simply not claimed
meanwhile (never slept on).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from services.core.db import UnitOfWork
from services.core.observability import get_logger
from services.core.settings import Settings
from services.core.tracing import TRACEPARENT
from services.notifier.claiming import claim_until_stopped
from services.notifier.egress import WebhookClient
from services.notifier.persistence import CHAT, DueWebhook, due_webhooks, lease
from services.notifier.recording import CHAT_PERMANENT, Finished, Recorder
from services.notifier.redaction import hidden
from services.notifier.retries import AttemptResult, SubscriptionPace
from services.notifier.sending import RESPONSE_KEEP, Request, post
from services.notifier.signing import signature_header
from services.notifier.slots import SendSlots

__all__ = ["CHAT_PERMANENT", "RESPONSE_KEEP", "Claim", "DeliveryWorker"]

log = get_logger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Claim:
    """A due webhook this worker leased until `leased_until`."""

    webhook: DueWebhook
    leased_until: datetime

    @property
    def delivery_id(self) -> uuid.UUID:
        return self.webhook.delivery_id

    @property
    def subscription_id(self) -> uuid.UUID:
        return self.webhook.subscription_id

    @property
    def rate_limit_per_s(self) -> float | None:
        return self.webhook.rate_limit_per_s


class DeliveryWorker:
    def __init__(
        self, *, uow: UnitOfWork, settings: Settings, client: WebhookClient, clock: Clock | None = None
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._paces: dict[uuid.UUID, SubscriptionPace] = {}
        self._slots: SendSlots[Claim] = SendSlots(
            concurrency=settings.delivery_concurrency,
            per_subscription=settings.delivery_subscription_concurrency,
            # a claim waiting for a slot must still have its lease cover a whole send when it starts
            ahead_s=(settings.delivery_lease_s - settings.delivery_timeout_s) / 2,
            ahead_max=settings.delivery_batch_size,
        )
        self._held: set[uuid.UUID] = set()  # claimed and not yet recorded: never claimed twice
        self._tasks: set[asyncio.Task[None]] = set()
        self._recorder = Recorder(uow=uow, settings=settings, recorded=self._recorded)
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for due deliveries now (e.g. the consumer just planned some) instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        recorder = asyncio.create_task(self._recorder.run(), name="webhook recorder")
        try:
            poll_s = self._settings.delivery_poll_interval_s
            await claim_until_stopped(
                what="deliveries", dispatch=self.dispatch, wake=self._wake, poll_s=poll_s, stop=stop
            )
            # Drain: claims not started are given back; every started POST ends within its deadline and is
            # recorded (no resend after a stop).
            self._stopping = True
            for claim in self._slots.take_waiting():
                self._recorder.give_back(claim.delivery_id, claim.leased_until)
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._recorder.close()
            await recorder
        finally:
            self._stopping = True
            self._slots.take_waiting()
            for task in self._tasks:  # cancelled mid-loop (past the grace period): their leases expire
                task.cancel()
            recorder.cancel()
            await self._client.aclose()
            log.info("delivery worker stopped")

    async def dispatch(self) -> bool:
        """Claim what the slots allow, start what may be sent now; True if it should look again at once."""
        limit = self._slots.claimable()
        if limit <= 0 or self._stopping:
            return False
        claims, _ = await self.claim(limit)
        self._start_waiting()
        return bool(claims) and self._slots.claimable() > 0

    async def claim(self, limit: int) -> tuple[list[Claim], bool]:
        """Lease up to `limit` due deliveries, none of a subscription whose window is full or whose pace says
        wait, and queue them for a slot; also whether any due delivery was seen."""
        now, moment = self._clock(), time.monotonic()
        self._paces = {sid: pace for sid, pace in self._paces.items() if pace.wait() > 0}  # forget idle ones
        leased_until = now + timedelta(seconds=self._settings.delivery_lease_s)
        room: dict[uuid.UUID, int] = {}
        claims: list[Claim] = []
        async with self._uow.begin() as session:
            due = await due_webhooks(
                session,
                now=now,
                limit=min(limit, self._settings.delivery_batch_size),
                skip_subscriptions=self._slots.full(moment) | set(self._paces),
                # a lease that ran out while its claim is still waiting, sending or recording is still ours
                skip_deliveries=self._held,
            )
            for webhook in due:
                if len(claims) >= limit:
                    break
                left = room.setdefault(webhook.subscription_id, self._slots.room(webhook.subscription_id, moment))
                if left <= 0 or not self._paced(webhook.subscription_id, webhook.rate_limit_per_s):
                    continue
                room[webhook.subscription_id] = left - 1
                claims.append(Claim(webhook=webhook, leased_until=leased_until))
            await lease(session, [claim.delivery_id for claim in claims], leased_until)
        for claim in claims:
            self._held.add(claim.delivery_id)
            self._slots.add(claim.subscription_id, claim.delivery_id, claim, paced=bool(claim.rate_limit_per_s))
        return claims, bool(due)

    def _paced(self, subscription_id: uuid.UUID, rate: float | None) -> bool:
        """Whether the subscription's rate limit allows a send now (and if so, count it)."""
        if not rate:
            return True
        pace = self._paces.get(subscription_id)
        if pace is None or pace.rate != rate:
            pace = self._paces[subscription_id] = SubscriptionPace(rate)
        if pace.wait() > 0:
            return False
        pace.take()
        return True

    def _start_waiting(self) -> None:
        """Start a send for each waiting claim a slot may take now."""
        while not self._stopping and (claim := self._slots.start(time.monotonic())) is not None:
            task = asyncio.create_task(self._send(claim), name=f"webhook {claim.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, claim: Claim) -> None:
        """POST one claim and hand its outcome to the recorder; nothing here can disturb another delivery."""
        sent, webhook = False, claim.webhook
        try:
            now = self._clock()
            if now + timedelta(seconds=self._settings.delivery_timeout_s) >= claim.leased_until:
                # Waited too long (a stalled loop, a slowed receiver): the lease could run out mid-send and
                # another replica send it too.
                log.warning("webhook claim too old to send; given back", delivery_id=str(claim.delivery_id))
                self._recorder.give_back(claim.delivery_id, claim.leased_until)
                return
            outcome = await post(
                self._client, _request(webhook, int(now.timestamp())), deadline_s=self._settings.delivery_timeout_s
            )
            sent = True
            if webhook.channel in CHAT:
                outcome = _without_url(outcome, webhook.url)
            self._recorder.add(
                Finished(
                    delivery_id=webhook.delivery_id,
                    subscription_id=webhook.subscription_id,
                    review_id=webhook.review_id,
                    msg_id=webhook.msg_id,
                    traceparent=webhook.traceparent,
                    outcome=outcome,
                    at=self._clock(),
                )
            )
        finally:
            if sent:
                self._slots.finished(claim.subscription_id, claim.delivery_id, time.monotonic())
            else:
                self._slots.drop(claim.subscription_id, claim.delivery_id)
            self._start_waiting()

    def _recorded(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        """The recorder is done with these (recorded, given back, or given up on): claimable again; their
        reviews' next deliveries may have become ready."""
        self._held.difference_update(delivery_ids)
        self._wake.set()


def _request(webhook: DueWebhook, timestamp: int) -> Request:
    body = webhook.body.encode()
    if webhook.channel in CHAT:  # Slack and Teams take a plain JSON POST: the URL is the credential
        return Request(webhook.url, body, {"content-type": "application/json", "user-agent": "smits-chat/1"})
    headers = {
        "content-type": "application/json",
        "user-agent": "smits-webhooks/1",
        "webhook-id": webhook.msg_id,
        "webhook-timestamp": str(timestamp),
        **({TRACEPARENT: webhook.traceparent} if webhook.traceparent else {}),
        "webhook-signature": signature_header(
            list(webhook.secrets), msg_id=webhook.msg_id, timestamp=timestamp, body=body
        ),
    }
    return Request(webhook.url, body, headers)


def _without_url(outcome: AttemptResult, url: str) -> AttemptResult:
    """A chat attempt as it is logged and stored: an error or answer quoting the URL (its credential) does not."""
    return replace(
        outcome,
        response=hidden(outcome.response, url) if outcome.response else outcome.response,
        error=hidden(outcome.error, url) if outcome.error else outcome.error,
    )
