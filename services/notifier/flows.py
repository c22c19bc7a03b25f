"""Notifier use cases: review events → delivery rows (one per event x matching subscription, and each person's
notices of the event, `people.py`), in the caller's transaction (opened and committed by `core.kafka.BatchConsumer`;
nothing here commits)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventV1
from services.core.db import insert_ignore, new_id, table_of
from services.core.kafka import Message
from services.core.observability import get_logger
from services.core.tracing import child_of, from_headers
from services.notifier.mail import MailConfig
from services.notifier.matching import wants
from services.notifier.people import plan_people
from services.notifier.persistence import Channel, DeliveryRow, SubscriptionRow, pending_pairs, planned
from services.notifier.redaction import redacted
from services.notifier.retries import DeliveryStatus

log = get_logger(__name__)


def webhook_body(event: ReviewEventV1, *, cleared: bool = True) -> str:
    """The Standard Webhooks body; fixed when the delivery is created so every retry (and a resend) signs the
    same bytes. A restricted review's event for a subscription not `cleared` for restricted data carries only
    ids: the stored body is already the redacted one, so nothing can later send more."""
    data = event.data if cleared or not event.restricted else redacted(event.data)
    return orjson.dumps({"type": event.type.value, "timestamp": event.occurred_at.isoformat(), "data": data}).decode()


async def plan_deliveries(
    session: AsyncSession, batch: Sequence[Message], *, now: datetime, mail: MailConfig | None = None
) -> int:
    """Insert one pending delivery per (event, enabled matching subscription), and with `mail` (a mail server
    is configured) each person's notices (`people.plan_people`: an e-mail or a digest item, by their
    preferences); replays insert nothing."""
    parsed = [(_parse(message), from_headers(message.headers)) for message in batch]
    events = [(event, traceparent) for event, traceparent in parsed if event is not None]
    if not events:
        return 0
    mails = await plan_people(session, [event for event, _ in events], mail=mail, now=now) if mail else 0
    return mails + await _plan_webhooks(session, events, now=now)


async def _plan_webhooks(
    session: AsyncSession, events: Sequence[tuple[ReviewEventV1, str | None]], *, now: datetime
) -> int:
    subscriptions = (
        await session.scalars(
            select(SubscriptionRow).where(SubscriptionRow.enabled, SubscriptionRow.deleted_at.is_(None))
        )
    ).all()
    rows: list[dict[str, Any]] = []
    for event, traceparent in events:
        bodies = {cleared: webhook_body(event, cleared=cleared) for cleared in (True, False)}
        for subscription in subscriptions:
            if wants(
                event_types=subscription.event_types,
                categories=subscription.categories,
                severities=subscription.severities,
                scopes=subscription.scopes,
                event=event,
                cleared=subscription.restricted_data,
            ):
                body = bodies[subscription.restricted_data]
                rows.append(
                    {
                        "id": new_id(),
                        "msg_id": f"msg_{event.id.hex}",
                        "subscription_id": subscription.id,
                        "channel": Channel.WEBHOOK,
                        "recipient": None,
                        "event_type": event.type.value,
                        "review_id": str(event.review_id),
                        "sequence": event.sequence,
                        "body": body,
                        "traceparent": child_of(traceparent),
                        "status": DeliveryStatus.PENDING,
                        "attempt_count": 0,
                        "next_attempt_at": now,
                        "locked_until": None,
                        "created_at": now,
                        "last_status_code": None,
                    }
                )
    stored = await planned(session, {(row["msg_id"], row["subscription_id"]) for row in rows})
    # Already planned: the same event again at another offset (the engine's outbox relay republishes
    # after a crash between its acks and its delete). Stored consumer positions only drop a replay of
    # the same offsets, so this check stays; `_order` must not count such a row as a predecessor.
    rows = [row for row in rows if (row["msg_id"], row["subscription_id"]) not in stored]
    await _order(session, rows)
    if rows:
        table = table_of(DeliveryRow)
        await session.execute(insert_ignore(session, table, ["msg_id", "subscription_id"]), rows)
    return len(rows)


async def _order(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Only the first pending delivery of a (subscription, review) is ready; the others wait their turn.

    `rows` must hold new deliveries only: one already stored (and perhaps delivered) must not count as
    the predecessor that a new one waits for."""
    pairs = {(row["subscription_id"], row["review_id"]) for row in rows if row["review_id"] is not None}
    taken = await pending_pairs(session, pairs)
    for row in rows:  # event order
        pair = (row["subscription_id"], row["review_id"])
        row["ready"] = row["review_id"] is None or pair not in taken
        taken.add(pair)


def _parse(message: Message) -> ReviewEventV1 | None:
    try:
        return ReviewEventV1.model_validate_json(message.value or b"")
    except ValidationError as exc:
        log.error("unreadable review event skipped", partition=message.partition, offset=message.offset, error=str(exc))
        return None
