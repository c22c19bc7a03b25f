"""Planning person notices, in the consumer's transaction (nothing here commits): each review event's notices
(`notices.person_notices`) go, by the person's preferences, to an e-mail delivery at once (held to the end of
their quiet hours), to their daily digest, or nowhere (`off`). Keyed (event, address) both ways, so a replayed
event plans nothing twice."""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.db import new_id
from services.core.observability import get_logger
from services.notifier.mail import MailConfig, document_notice
from services.notifier.notices import PersonNotice, person_notices
from services.notifier.persistence import (
    Channel,
    PreferenceRow,
    insert_new_items,
    insert_new_mail,
    planned_items,
    planned_mail,
    preferences_of,
)
from services.notifier.preferences import Mode, NoticeKind, PersonChannel, Preferences, clock
from services.notifier.retries import DeliveryStatus

log = get_logger(__name__)


def preferences(row: PreferenceRow | None) -> Preferences:
    """The domain view of a stored row (no row: the defaults). A stored value this notifier cannot use (a time zone
    its host does not know, a malformed time) gives that person the defaults, logged, never an error: a notice is
    planned inside the consumer's transaction, where one person's row must not hold up everyone else's."""
    if row is None:
        return Preferences()
    modes: dict[PersonChannel, dict[NoticeKind, Mode]] = {}
    for channel in PersonChannel:
        stored = row.modes.get(channel.value, {}) if isinstance(row.modes, dict) else {}
        modes[channel] = {kind: Mode(stored[kind.value]) for kind in NoticeKind if stored.get(kind.value) in set(Mode)}
    try:
        quiet = (clock(row.quiet_start), clock(row.quiet_end)) if row.quiet_start and row.quiet_end else (None, None)
        zoneinfo.ZoneInfo(row.time_zone)  # known to this host's time zone database
        if not 0 <= row.digest_hour <= 23:
            raise ValueError(f"digest hour {row.digest_hour}")
    except Exception:
        log.warning("stored notice preferences unusable here; the defaults apply", principal_id=str(row.principal_id))
        return Preferences(modes=modes)
    return Preferences(
        time_zone=row.time_zone, quiet_start=quiet[0], quiet_end=quiet[1], digest_hour=row.digest_hour, modes=modes
    )


async def preferences_for(session: AsyncSession, emails: Collection[str]) -> dict[str, Preferences]:
    rows = await preferences_of(session, emails)
    return {email: preferences(rows.get(email)) for email in emails}


async def plan_people(
    session: AsyncSession, events: Sequence[ReviewEventV1], *, mail: MailConfig, now: datetime
) -> int:
    """Plan every person notice of `events`; returns how many e-mails and digest items were planned."""
    found = [(event, notice) for event in events for notice in _notices(event, mail)]
    if not found:
        return 0
    chosen = await preferences_for(session, {notice.recipient for _, notice in found})
    mails: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for event, notice in found:
        person = chosen[notice.recipient]
        mode = person.mode(notice.kind, PersonChannel.EMAIL)
        if mode is Mode.IMMEDIATE:
            row = _mail(event, notice, mail=mail, now=now, send_at=person.release(now))
            if row is not None:
                mails.append(row)
        elif mode is Mode.DIGEST:
            items.append(_item(event, notice, now=now))
    # A notice is planned once, as a mail or as a digest item: a replayed batch after the person switched between
    # `immediate` and `digest` finds it planned the other way and plans nothing.
    keys = {(row["msg_id"], row["recipient"]) for row in (*mails, *items)}
    done = await planned_mail(session, keys) | await planned_items(session, keys)
    mails, items = _new(mails, done), _new(items, done)
    await insert_new_mail(session, mails)
    await insert_new_items(session, items)
    return len(mails) + len(items)


def _notices(event: ReviewEventV1, mail: MailConfig) -> list[PersonNotice]:
    notices = person_notices(event, public_url=mail.public_url)
    published = event.type is ReviewEventType.DOCUMENT_PUBLISHED
    if published and document_notice(event.data, restricted=event.restricted, public_url=mail.public_url) is None:
        log.error("published-document event without a document; no e-mail", event_id=str(event.id))
    return notices


def _new(rows: list[dict[str, Any]], stored: set[tuple[str, str]]) -> list[dict[str, Any]]:
    return [row for row in rows if (row["msg_id"], row["recipient"]) not in stored]


def _mail(
    event: ReviewEventV1, notice: PersonNotice, *, mail: MailConfig, now: datetime, send_at: datetime
) -> dict[str, Any] | None:
    delivery_id = new_id()
    try:
        body = notice.render(delivery_id, mail, now)
    except Exception:  # one address the mail library cannot write must not park the partition
        log.exception("e-mail could not be composed; not planned", event_id=str(event.id), kind=notice.kind.value)
        return None
    return mail_row(
        delivery_id=delivery_id,
        msg_id=f"msg_{event.id.hex}",
        recipient=notice.recipient,
        event_type=event.type.value,
        review_id=str(event.review_id),
        sequence=event.sequence,
        body=body,
        now=now,
        send_at=send_at,
    )


def mail_row(
    *,
    delivery_id: uuid.UUID,
    msg_id: str,
    recipient: str,
    event_type: str,
    review_id: str | None,
    sequence: int,
    body: str,
    now: datetime,
    send_at: datetime,
) -> dict[str, Any]:
    """A pending e-mail delivery, first tried at `send_at`."""
    return {
        "id": delivery_id,
        "msg_id": msg_id,
        "subscription_id": None,
        "channel": Channel.EMAIL,
        "recipient": recipient,
        "event_type": event_type,
        "review_id": review_id,
        "sequence": sequence,
        "body": body,
        "traceparent": None,
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "next_attempt_at": send_at,
        "locked_until": None,
        "created_at": now,
        "last_status_code": None,
        "ready": True,  # e-mails to a person wait for nothing
    }


def _item(event: ReviewEventV1, notice: PersonNotice, *, now: datetime) -> dict[str, Any]:
    return {
        "msg_id": f"msg_{event.id.hex}",
        "recipient": notice.recipient,
        "kind": notice.kind.value,
        "event_type": event.type.value,
        "review_id": str(event.review_id),
        "subject": notice.subject[:300],
        "link": notice.link,
        "created_at": now,
        "digest_id": None,
    }
