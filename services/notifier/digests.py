"""The daily digest: once a day, at each person's digest hour (their time zone), their waiting digest items become
one e-mail listing them all, planned as an ordinary e-mail delivery (durable, retried by the `MailWorker`) and
held to the end of their quiet hours if the digest hour falls inside them.

The digest is keyed (person, local date): its delivery's `msg_id` is `digest_<date>` for their address, unique, so
it is planned once however often the worker ticks and however many replicas run; items are claimed with `FOR
UPDATE SKIP LOCKED` on Postgres and marked with the digest that carried them, in the same transaction. Items that
arrive after a day's digest was planned wait for the next day's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, date, datetime

from services.core.db import UnitOfWork, new_id
from services.core.observability import get_logger
from services.notifier.mail import MailConfig
from services.notifier.notices import DigestLine, compose_digest
from services.notifier.people import mail_row, preferences_for
from services.notifier.persistence import claim_items, insert_digest, planned_mail, waiting_recipients

log = get_logger(__name__)

Clock = Callable[[], datetime]
DIGEST_EVENT = "notifier.digest"
"""The `event_type` of a digest delivery (it carries many events)."""
POLL_S = 30.0
BATCH = 200
"""People looked at per tick."""


class DigestWorker:
    def __init__(
        self, *, uow: UnitOfWork, mail: MailConfig, clock: Clock | None = None, poll_s: float = POLL_S
    ) -> None:
        self._uow = uow
        self._mail = mail
        self._clock = clock or (lambda: datetime.now(UTC))
        self._poll_s = poll_s
        self.planned: Callable[[], None] = lambda: None
        """Called after a tick planned digests (the composition root wakes the `MailWorker`)."""

    async def run(self, stop: asyncio.Event) -> None:
        log.info("digest worker started")
        while not stop.is_set():
            try:
                if await self.tick():
                    self.planned()
            except Exception:
                log.exception("planning digests failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
        log.info("digest worker stopped")

    async def tick(self) -> int:
        """Plan every digest that is due now; returns how many were planned. Everyone with waiting items is looked
        at (in pages of `BATCH`), so people whose hour has not come cannot crowd out those whose hour has; one
        person whose digest cannot be planned is logged and skipped, never holding up the others."""
        now = self._clock()
        planned, after = 0, None
        while True:
            async with self._uow.begin() as session:
                people = await waiting_recipients(session, limit=BATCH, after=after)
                chosen = await preferences_for(session, people)
            for person in people:
                day = chosen[person].digest_date(now)
                if day is None:
                    continue
                try:
                    planned += await self._plan(person, f"digest_{day.isoformat()}", now=now, day=day)
                except Exception:
                    log.exception("a digest could not be planned; the others go on", recipient=person)
            if len(people) < BATCH:
                return planned
            after = people[-1]

    async def _plan(self, person: str, msg_id: str, *, now: datetime, day: date) -> int:
        async with self._uow.begin() as session:
            if await planned_mail(session, {(msg_id, person)}):
                return 0  # today's is planned: the rest waits for tomorrow's
            items = await claim_items(session, person, now=now)
            if not items:
                return 0  # none, or another notifier is composing them
            chosen = (await preferences_for(session, [person]))[person]
            delivery_id = new_id()
            lines = [DigestLine(kind=i.kind, subject=i.subject, link=i.link, at=i.created_at) for i in items]
            body = compose_digest(lines, day=day, delivery_id=delivery_id, recipient=person, config=self._mail, now=now)
            row = mail_row(
                delivery_id=delivery_id,
                msg_id=msg_id,
                recipient=person,
                event_type=DIGEST_EVENT,
                review_id=None,
                sequence=0,
                body=body,
                now=now,
                send_at=chosen.release(now),
            )
            if not await insert_digest(session, row):
                return 0  # planned meanwhile by another notifier; the items stay for that one's day
            for item in items:
                item.digest_id = delivery_id
            log.info("digest planned", items=len(items), send_at=row["next_attempt_at"].isoformat())
            return 1
