"""The `reviews.events` consumer: delivery rows planned by the flow, then the delivery worker woken after
commit (`core.kafka.BatchConsumer` owns the transaction, the stored position, retries and parking)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.settings import Settings
from services.notifier.flows import plan_deliveries
from services.notifier.mail import MailConfig


def review_events_consumer(
    *,
    settings: Settings,
    uow: UnitOfWork,
    planned: Callable[[], None] = lambda: None,
    after_handle: Callable[[Sequence[Message]], None] | None = None,
) -> BatchConsumer[int]:
    """`planned` runs after a batch's deliveries are committed (the notifier wakes its delivery workers). E-mails
    are planned only when a mail server is configured (`SMITS_SMTP_HOST`)."""
    mail = MailConfig.of(settings)

    async def flow(session: AsyncSession, batch: Sequence[Message], now: datetime) -> int:
        return await plan_deliveries(session, batch, now=now, mail=mail, public_url=settings.public_url)

    return BatchConsumer(
        settings=settings,
        uow=uow,
        topic=topics.REVIEWS_EVENTS,
        group="notifier",
        flow=flow,
        hooks=[lambda _: planned()],
        after_handle=after_handle,
    )
