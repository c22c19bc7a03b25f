"""Notifier use cases: review events → delivery rows (one per event x matching subscription, and one e-mail per
person an event is for), in the caller's transaction (opened and committed by `core.kafka.BatchConsumer`;
nothing here commits)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.db import insert_ignore, new_id, table_of
from services.core.kafka import Message
from services.core.observability import get_logger
from services.core.settings import Settings
from services.core.tracing import child_of, from_headers
from services.notifier.chat import message_of, slack_payload, teams_payload
from services.notifier.mail import MailConfig, compose, document_notice, recipients_of
from services.notifier.matching import wants
from services.notifier.persistence import Channel, DeliveryRow, SubscriptionRow, pending_pairs, planned, planned_mail
from services.notifier.redaction import redacted
from services.notifier.retries import DeliveryStatus

log = get_logger(__name__)

DEFAULT_PUBLIC_URL: str = Settings.model_fields["public_url"].default


def webhook_body(event: ReviewEventV1, *, cleared: bool = True) -> str:
    """The Standard Webhooks body; fixed when the delivery is created so every retry (and a resend) signs the
    same bytes. A restricted review's event for a subscription not `cleared` for restricted data carries only
    ids: the stored body is already the redacted one, so nothing can later send more."""
    data = event.data if cleared or not event.restricted else redacted(event.data)
    return orjson.dumps({"type": event.type.value, "timestamp": event.occurred_at.isoformat(), "data": data}).decode()


def subscription_body(event: ReviewEventV1, channel: str, *, cleared: bool, public_url: str) -> str:
    """What a subscription on `channel` is sent for `event`: the Standard Webhooks body, or a Slack or Teams
    message rendered now (see `chat`), each fixed when the delivery is planned."""
    if channel == Channel.SLACK:
        return orjson.dumps(slack_payload(message_of(event, cleared=cleared, public_url=public_url))).decode()
    if channel == Channel.TEAMS:
        return orjson.dumps(teams_payload(message_of(event, cleared=cleared, public_url=public_url))).decode()
    return webhook_body(event, cleared=cleared)


async def plan_deliveries(
    session: AsyncSession,
    batch: Sequence[Message],
    *,
    now: datetime,
    mail: MailConfig | None = None,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> int:
    """Insert one pending delivery per (event, enabled matching subscription), and with `mail` (a mail server
    is configured) one e-mail per recipient of a published document; replays insert nothing. Chat messages link
    to `public_url`."""
    parsed = [(_parse(message), from_headers(message.headers)) for message in batch]
    events = [(event, traceparent) for event, traceparent in parsed if event is not None]
    if not events:
        return 0
    mails = await _plan_mail(session, [event for event, _ in events], mail=mail, now=now) if mail else 0
    return mails + await _plan_webhooks(session, events, now=now, public_url=public_url)


async def _plan_webhooks(
    session: AsyncSession, events: Sequence[tuple[ReviewEventV1, str | None]], *, now: datetime, public_url: str
) -> int:
    """One delivery per (event, matching subscription), webhook or chat message alike (same ordering, retries
    and log); a body is rendered once per (channel, clearance) an event needs."""
    subscriptions = (
        await session.scalars(
            select(SubscriptionRow).where(SubscriptionRow.enabled, SubscriptionRow.deleted_at.is_(None))
        )
    ).all()
    rows: list[dict[str, Any]] = []
    for event, traceparent in events:
        bodies: dict[tuple[str, bool], str] = {}
        for subscription in subscriptions:
            if wants(
                event_types=subscription.event_types,
                categories=subscription.categories,
                severities=subscription.severities,
                scopes=subscription.scopes,
                event=event,
                cleared=subscription.restricted_data,
            ):
                key = (subscription.channel, subscription.restricted_data)
                if key not in bodies:
                    bodies[key] = subscription_body(
                        event, subscription.channel, cleared=subscription.restricted_data, public_url=public_url
                    )
                rows.append(
                    {
                        "id": new_id(),
                        "msg_id": f"msg_{event.id.hex}",
                        "subscription_id": subscription.id,
                        "channel": subscription.channel,
                        "recipient": None,
                        "event_type": event.type.value,
                        "review_id": str(event.review_id),
                        "sequence": event.sequence,
                        "body": bodies[key],
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


async def _plan_mail(session: AsyncSession, events: Sequence[ReviewEventV1], *, mail: MailConfig, now: datetime) -> int:
    """One e-mail per recipient of each published document version, keyed (event, address) so a replay of the
    event plans none again. The message is composed now, its `Message-ID` from the new delivery's id."""
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.type is not ReviewEventType.DOCUMENT_PUBLISHED:
            continue
        notice = document_notice(event.data, restricted=event.restricted, public_url=mail.public_url)
        if notice is None:
            log.error("published-document event without a document; no e-mail", event_id=str(event.id))
            continue
        for recipient in recipients_of(event.data):
            delivery_id = new_id()
            try:
                body = compose(notice, delivery_id=delivery_id, recipient=recipient, config=mail, now=now)
            except Exception:  # one address the mail library cannot write must not park the partition
                log.exception("e-mail could not be composed; not planned", event_id=str(event.id))
                continue
            rows.append(_mail_row(event, delivery_id=delivery_id, recipient=recipient, body=body, now=now))
    stored = await planned_mail(session, {(row["msg_id"], row["recipient"]) for row in rows})
    rows = [row for row in rows if (row["msg_id"], row["recipient"]) not in stored]
    if rows:
        await session.execute(insert_ignore(session, table_of(DeliveryRow), ["msg_id", "recipient"]), rows)
    return len(rows)


def _mail_row(
    event: ReviewEventV1, *, delivery_id: uuid.UUID, recipient: str, body: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "msg_id": f"msg_{event.id.hex}",
        "subscription_id": None,
        "channel": Channel.EMAIL,
        "recipient": recipient,
        "event_type": event.type.value,
        "review_id": str(event.review_id),
        "sequence": event.sequence,
        "body": body,
        "traceparent": None,
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "created_at": now,
        "last_status_code": None,
        "ready": True,  # e-mails to a person wait for nothing
    }


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
