"""Notifier tables (prefix `notifier_`) and their queries. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    any_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CompoundSelect, Select

from services.core.db import Base, UTCDateTime, insert_ignore, is_postgres, new_id, table_of
from services.core.identity.store import PrincipalRow
from services.notifier.retries import DeliveryStatus
from services.notifier.signing import active_secrets

_ID = BigInteger().with_variant(Integer(), "sqlite")


class Channel(StrEnum):
    """How a delivery leaves smits (the `channel` column holds its value): a subscription's channel is `webhook`,
    `slack` or `teams` (`CHAT`); an e-mail to a person has no subscription."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    SLACK = "slack"
    TEAMS = "teams"


CHAT = frozenset({Channel.SLACK, Channel.TEAMS})
"""Chat channels: their URL is the credential (never shown in full), and they are not signed."""


class SubscriptionRow(Base):
    """A webhook endpoint, Slack incoming webhook or Teams workflow webhook (`channel`, fixed when created). A chat
    subscription has no signing secret (`secret` is empty): its URL is the credential."""

    __tablename__ = "notifier_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    severities: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    restricted_data: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Cleared for restricted (need-to-know) reviews: gets their events in full, not only ids and type."""
    channel: Mapped[str] = mapped_column(String(20), default=Channel.WEBHOOK, server_default=Channel.WEBHOOK.value)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, plus the previous one while its rotation grace period lasts."""
        return active_secrets(self.secret, self.previous_secret, self.previous_secret_expires_at, now)


class DeliveryRow(Base):
    """One event for one subscription (a webhook, or a Slack or Teams message: `channel` is the subscription's), or
    one notice for one person (an e-mail to `recipient`). `msg_id` is the `webhook-id`, stable across retries; an
    e-mail's `Message-ID` is derived from its `id`.
    An e-mail's `body` is the whole message (headers included), fixed when it is planned."""

    __tablename__ = "notifier_deliveries"
    __table_args__ = (
        UniqueConstraint("msg_id", "subscription_id"),
        UniqueConstraint("msg_id", "recipient"),
        Index("ix_notifier_deliveries_due", "status", "ready", "next_attempt_at"),
        Index("ix_notifier_deliveries_order", "subscription_id", "review_id", "sequence"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    msg_id: Mapped[str] = mapped_column(String(100))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifier_subscriptions.id"), index=True)
    """None for an e-mail."""
    channel: Mapped[str] = mapped_column(String(20), default=Channel.WEBHOOK, server_default=Channel.WEBHOOK.value)
    recipient: Mapped[str | None] = mapped_column(String(320))
    """An e-mail's address; None for a webhook."""
    event_type: Mapped[str] = mapped_column(String(100))
    review_id: Mapped[str | None] = mapped_column(String(100))
    sequence: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    traceparent: Mapped[str | None] = mapped_column(String(55))
    status: Mapped[str] = mapped_column(String(20))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    ready: Mapped[bool] = mapped_column(Boolean, default=True)
    """False while an earlier event of the same review is pending for the same subscription: one review's
    webhooks reach a subscriber in event order. The earliest pending one is made ready when its
    predecessor stops being pending (`promote_next`)."""


class NoticeRow(Base):
    """Something an operator should know about a subscription (e.g. `subscription.disabled`)."""

    __tablename__ = "notifier_notices"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notifier_subscriptions.id"), index=True)
    type: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[str] = mapped_column(String(1000))


class PreferenceRow(Base):
    """A person's notice preferences (no row: the defaults, `preferences.Preferences()`). `modes` is
    `{channel: {kind: mode}}`; quiet hours are local `HH:MM` times, both or neither."""

    __tablename__ = "notifier_preferences"

    principal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("core_principals.id"), primary_key=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    digest_hour: Mapped[int] = mapped_column(Integer)
    modes: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DigestItemRow(Base):
    """A notice waiting for its person's daily digest (`digest_id` None), or the digest e-mail that carried it.
    Keyed like an e-mail delivery, (event `msg_id`, recipient), so a replayed event adds none again."""

    __tablename__ = "notifier_digest_items"
    __table_args__ = (
        UniqueConstraint("msg_id", "recipient"),
        Index("ix_notifier_digest_items_waiting", "recipient", "digest_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(100))
    review_id: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(300))
    link: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    digest_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The digest e-mail (a delivery's id) that listed it."""


class AttemptRow(Base):
    __tablename__ = "notifier_attempts"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notifier_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(String(1000))


_deliveries = table_of(DeliveryRow).c

Pair = tuple[uuid.UUID, str | None]
"""(subscription id, review id): the unit within which webhooks keep event order."""


async def planned(session: AsyncSession, keys: Collection[tuple[str, uuid.UUID]]) -> set[tuple[str, uuid.UUID]]:
    """The (msg_id, subscription_id) among `keys` that already have a delivery."""
    if not keys:
        return set()
    query = select(DeliveryRow.msg_id, DeliveryRow.subscription_id).where(
        _pairs_among(session, _deliveries.msg_id, _deliveries.subscription_id, keys)
    )
    rows = (await session.execute(query)).all()
    return {(msg_id, subscription_id) for msg_id, subscription_id in rows if subscription_id is not None}


async def planned_mail(session: AsyncSession, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (msg_id, recipient) among `keys` that already have an e-mail delivery."""
    if not keys:
        return set()
    query = select(DeliveryRow.msg_id, DeliveryRow.recipient).where(
        DeliveryRow.channel == Channel.EMAIL, tuple_(DeliveryRow.msg_id, DeliveryRow.recipient).in_(keys)
    )
    return {(msg_id, recipient) for msg_id, recipient in (await session.execute(query)).all() if recipient}


async def preferences_of(session: AsyncSession, emails: Collection[str]) -> dict[str, PreferenceRow]:
    """The stored preferences of the people with these (normalised) e-mail addresses; others have none."""
    if not emails:
        return {}
    query = (
        select(PrincipalRow.email, PreferenceRow)
        .join(PreferenceRow, PreferenceRow.principal_id == PrincipalRow.id)
        .where(PrincipalRow.email.in_(list(emails)))  # stored normalised (`normal_email`)
    )
    return {email: row for email, row in (await session.execute(query)).all() if email}


async def planned_items(session: AsyncSession, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (msg_id, recipient) among `keys` that already have a digest item."""
    if not keys:
        return set()
    query = select(DigestItemRow.msg_id, DigestItemRow.recipient).where(
        tuple_(DigestItemRow.msg_id, DigestItemRow.recipient).in_(keys)
    )
    return {(msg_id, recipient) for msg_id, recipient in (await session.execute(query)).all()}


async def waiting_recipients(session: AsyncSession, *, limit: int, after: str | None = None) -> list[str]:
    """People with digest items no digest has carried yet, by address, from after `after` (a page's last)."""
    query = select(DigestItemRow.recipient).where(DigestItemRow.digest_id.is_(None))
    if after is not None:
        query = query.where(DigestItemRow.recipient > after)
    query = query.group_by(DigestItemRow.recipient).order_by(DigestItemRow.recipient).limit(limit)
    return list((await session.scalars(query)).all())


async def claim_items(session: AsyncSession, recipient: str, *, now: datetime) -> list[DigestItemRow]:
    """The person's waiting digest items up to `now`, oldest first, locked; on Postgres those another notifier is
    composing into a digest are skipped."""
    query = (
        select(DigestItemRow)
        .where(
            DigestItemRow.recipient == recipient,
            DigestItemRow.digest_id.is_(None),
            DigestItemRow.created_at <= now,
        )
        .order_by(DigestItemRow.created_at, DigestItemRow.id)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


async def pending_pairs(session: AsyncSession, pairs: Collection[Pair]) -> set[Pair]:
    """The pairs that already have a pending delivery.

    On Postgres those deliveries are locked: a concurrent transaction that ends one of them (and then makes
    its successor ready, `promote_next`) either finishes first, so it is not seen as pending here, or waits
    for this one to commit, so it sees the successors planned here. Without the lock a successor planned
    while its predecessor is being recorded could stay waiting for ever."""
    if not pairs:
        return set()
    query = (
        select(DeliveryRow.subscription_id, DeliveryRow.review_id)
        .where(
            DeliveryRow.status == DeliveryStatus.PENDING,
            _pairs_among(session, _deliveries.subscription_id, _deliveries.review_id, pairs),
        )
        .order_by(DeliveryRow.id)
    )
    if is_postgres(session):
        query = query.with_for_update()
    rows = (await session.execute(query)).all()
    return {(subscription_id, review_id) for subscription_id, review_id in rows if subscription_id is not None}


async def promote_next(session: AsyncSession, pairs: Collection[Pair]) -> None:
    """Make the earliest pending delivery of each pair ready (its predecessor is no longer pending)."""
    if not pairs:
        return
    query = (
        select(DeliveryRow.id, DeliveryRow.subscription_id, DeliveryRow.review_id, DeliveryRow.ready)
        .where(
            DeliveryRow.status == DeliveryStatus.PENDING,
            _pairs_among(session, _deliveries.subscription_id, _deliveries.review_id, pairs),
        )
        .order_by(DeliveryRow.subscription_id, DeliveryRow.review_id, DeliveryRow.sequence)
    )
    earliest: dict[Pair, tuple[uuid.UUID, bool]] = {}
    for delivery_id, subscription_id, review_id, ready in (await session.execute(query)).all():
        if subscription_id is not None:  # always: the pairs name subscriptions
            earliest.setdefault((subscription_id, review_id), (delivery_id, ready))
    waiting = [delivery_id for delivery_id, ready in earliest.values() if not ready]
    if waiting:
        await session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(waiting))
            .values(ready=True)
            .execution_options(synchronize_session=False)
        )


def _among(session: AsyncSession, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL one array parameter, so the statement's text (and its prepared plan) does not
    change with the number of values."""
    if is_postgres(session):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def _pairs_among(
    session: AsyncSession, first: ColumnElement[Any], second: ColumnElement[Any], pairs: Collection[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """`(first, second) IN pairs`; on PostgreSQL two array parameters joined by `unnest` (a list of pairs is a new
    statement for every count and an OR the planner takes tens of milliseconds over at a few hundred pairs)."""
    if not is_postgres(session):
        return tuple_(first, second).in_(list(pairs))
    firsts, seconds = zip(*pairs, strict=True) if pairs else ((), ())
    pair = (
        func.unnest(
            bindparam(None, list(firsts), type_=ARRAY(first.type)),
            bindparam(None, list(seconds), type_=ARRAY(second.type)),
        )
        .table_valued("first", "second")
        .render_derived()
    )
    return tuple_(first, second).in_(select(pair.c.first, pair.c.second))


@dataclass(kw_only=True, frozen=True, slots=True)
class DueWebhook:
    """A due delivery to a subscription (webhook or chat), with what sending it takes."""

    delivery_id: uuid.UUID
    msg_id: str
    body: str
    traceparent: str | None
    review_id: str | None
    subscription_id: uuid.UUID
    channel: str
    url: str
    secrets: tuple[str, ...]
    rate_limit_per_s: float | None


async def due_webhooks(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    skip_subscriptions: Collection[uuid.UUID] = (),
    skip_deliveries: Collection[uuid.UUID] = (),
) -> list[DueWebhook]:
    """Up to `limit` deliveries to live subscriptions that are ready, due and not leased, oldest due first, none of
    `skip_subscriptions` nor `skip_deliveries`; on Postgres locked (the caller leases those it takes, `lease`), and
    those another notifier is claiming skipped."""
    d, s = table_of(DeliveryRow).c, table_of(SubscriptionRow).c
    query = (
        select(
            d.id,
            d.msg_id,
            d.body,
            d.traceparent,
            d.review_id,
            s.id,
            s.channel,
            s.url,
            s.secret,
            s.previous_secret,
            s.previous_secret_expires_at,
            s.rate_limit_per_s,
        )
        .join_from(table_of(DeliveryRow), table_of(SubscriptionRow), s.id == d.subscription_id)
        .where(
            d.status == DeliveryStatus.PENDING,
            d.ready,
            d.next_attempt_at <= now,
            or_(d.locked_until.is_(None), d.locked_until < now),
            s.enabled,
            s.deleted_at.is_(None),
        )
        .order_by(d.next_attempt_at, d.sequence)
        .limit(limit)
    )
    if skip_subscriptions:
        query = query.where(not_(_among(session, d.subscription_id, skip_subscriptions)))
    if skip_deliveries:
        query = query.where(not_(_among(session, d.id, skip_deliveries)))
    if is_postgres(session):
        query = query.with_for_update(of=table_of(DeliveryRow), skip_locked=True)
    due: list[DueWebhook] = []
    for row in (await session.execute(query)).all():
        (delivery_id, msg_id, body, traceparent, review_id) = row[:5]
        (subscription_id, channel, url, secret, previous, previous_expires_at, rate) = row[5:]
        due.append(
            DueWebhook(
                delivery_id=delivery_id,
                msg_id=msg_id,
                body=body,
                traceparent=traceparent,
                review_id=review_id,
                subscription_id=subscription_id,
                channel=channel,
                url=url,
                secrets=tuple(active_secrets(secret, previous, previous_expires_at, now)),
                rate_limit_per_s=rate,
            )
        )
    return due


async def lease(session: AsyncSession, delivery_ids: Collection[uuid.UUID], until: datetime) -> None:
    """Lease these deliveries until `until`: one statement."""
    if delivery_ids:
        table = table_of(DeliveryRow)
        await session.execute(update(table).where(_among(session, table.c.id, delivery_ids)).values(locked_until=until))


async def lock_for_record(
    session: AsyncSession, delivery_ids: Collection[uuid.UUID], pairs: Collection[Pair]
) -> dict[uuid.UUID, int]:
    """Lock the deliveries whose attempts are being recorded together with the other pending deliveries of their
    (subscription, review) pairs (the successors `promote_next` may make ready), all at once in id order, as
    planning locks them (`pending_pairs`): the two cannot deadlock. Returns each recorded delivery's attempt count
    so far; a delivery that no longer exists is absent."""
    if not delivery_ids:
        return {}
    if is_postgres(session):
        query = _lock_for_record_postgres(delivery_ids, pairs)
    else:
        wanted: ColumnElement[bool] = DeliveryRow.id.in_(list(delivery_ids))
        if pairs:
            wanted = or_(
                wanted,
                and_(
                    DeliveryRow.status == DeliveryStatus.PENDING,
                    tuple_(DeliveryRow.subscription_id, DeliveryRow.review_id).in_(list(pairs)),
                ),
            )
        query = select(DeliveryRow.id, DeliveryRow.attempt_count).where(wanted)
    ids = set(delivery_ids)
    return {row_id: count for row_id, count in (await session.execute(query)).all() if row_id in ids}


def _lock_for_record_postgres(delivery_ids: Collection[uuid.UUID], pairs: Collection[Pair]) -> Select[uuid.UUID, int]:
    """`lock_for_record`'s query with three array parameters whatever the group's size (a list of values would be
    a new statement for every size, and its OR of pairs a long plan): the recorded ids, and the pairs' pending
    deliveries found through a join on (subscription, review)."""
    d = table_of(DeliveryRow).c
    recorded = select(func.unnest(bindparam(None, list(delivery_ids), type_=ARRAY(Uuid()))))
    wanted: Select[Any] | CompoundSelect[Any] = recorded
    if pairs:
        subscriptions, reviews = zip(*pairs, strict=True)
        pair = (
            func.unnest(
                bindparam(None, list(subscriptions), type_=ARRAY(Uuid())),
                bindparam(None, list(reviews), type_=ARRAY(String())),
            )
            .table_valued("subscription_id", "review_id")
            .render_derived()
        )
        successors = (
            select(d.id)
            .join_from(
                table_of(DeliveryRow),
                pair,
                and_(d.subscription_id == pair.c.subscription_id, d.review_id == pair.c.review_id),
            )
            .where(d.status == DeliveryStatus.PENDING)
        )
        wanted = union_all(recorded, successors)
    return select(d.id, d.attempt_count).where(d.id.in_(wanted)).order_by(d.id).with_for_update()


async def subscriptions_by_id(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, SubscriptionRow]:
    if not ids:
        return {}
    query = select(SubscriptionRow).where(SubscriptionRow.id.in_(list(ids)))
    return {row.id: row for row in await session.scalars(query)}


async def update_attempted(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write each attempted delivery's new state (`id`, `attempt_count`, `last_status_code`, `status`,
    `next_attempt_at`) and end its lease: one statement for them all."""
    if rows:
        await session.execute(update(DeliveryRow), [{**row, "locked_until": None} for row in rows])


async def release_leases(session: AsyncSession, leases: Collection[tuple[uuid.UUID, datetime]]) -> None:
    """End leases taken but not used (claimed, never sent), each only if it is still the one taken (a lease that
    ran out may have been taken again elsewhere)."""
    if not leases:
        return
    table = table_of(DeliveryRow)
    statement = (
        update(table)
        .where(table.c.id == bindparam("leased_id"), table.c.locked_until == bindparam("leased_until"))
        .values(locked_until=None)
    )
    await session.execute(statement, [{"leased_id": i, "leased_until": until} for i, until in leases])


async def next_due(session: AsyncSession, pair: Pair, *, now: datetime) -> DeliveryRow | None:
    """The earliest pending delivery of `pair` if it is ready, due and not leased (the caller leases it)."""
    row = await session.scalar(
        select(DeliveryRow)
        .where(
            DeliveryRow.status == DeliveryStatus.PENDING,
            DeliveryRow.subscription_id == pair[0],
            DeliveryRow.review_id == pair[1],
        )
        .order_by(DeliveryRow.sequence)
        .limit(1)
        .execution_options(populate_existing=True)  # `promote_next` may just have made it ready
    )
    if row is None or not row.ready or row.next_attempt_at is None or row.next_attempt_at > now:
        return None
    if row.locked_until is not None and row.locked_until >= now:
        return None
    return row


async def due_mail(
    session: AsyncSession, *, now: datetime, limit: int, held: Collection[uuid.UUID] = ()
) -> list[DeliveryRow]:
    """Up to `limit` pending e-mails that are due and not leased, oldest due first (the caller leases them), none
    of those the caller still `held`; on Postgres those another notifier is claiming are skipped."""
    query = (
        select(DeliveryRow)
        .where(
            DeliveryRow.channel == Channel.EMAIL,
            DeliveryRow.status == DeliveryStatus.PENDING,
            DeliveryRow.next_attempt_at <= now,
            or_(DeliveryRow.locked_until.is_(None), DeliveryRow.locked_until < now),
        )
        .order_by(DeliveryRow.next_attempt_at, DeliveryRow.created_at)
        .limit(limit)
    )
    if held:
        query = query.where(DeliveryRow.id.not_in(held))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


async def locked_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryRow | None:
    query = select(DeliveryRow).where(DeliveryRow.id == delivery_id).execution_options(populate_existing=True)
    if is_postgres(session):
        query = query.with_for_update()
    return await session.scalar(query)


# Reads for the subscription and delivery routes (transport decodes, calls these, encodes).


async def live_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> SubscriptionRow | None:
    """The subscription unless it does not exist or was deleted."""
    row = await session.get(SubscriptionRow, subscription_id)
    return None if row is None or row.deleted_at is not None else row


async def live_subscriptions(session: AsyncSession) -> list[SubscriptionRow]:
    query = select(SubscriptionRow).where(SubscriptionRow.deleted_at.is_(None)).order_by(SubscriptionRow.created_at)
    return list((await session.scalars(query)).all())


async def notices_of(session: AsyncSession, subscription_id: uuid.UUID) -> list[NoticeRow]:
    query = select(NoticeRow).where(NoticeRow.subscription_id == subscription_id).order_by(NoticeRow.id)
    return list((await session.scalars(query)).all())


async def recent_deliveries(
    session: AsyncSession, *, subscription_id: uuid.UUID | None, status: str | None, channel: str | None, limit: int
) -> list[DeliveryRow]:
    """Newest first."""
    query = select(DeliveryRow).order_by(DeliveryRow.created_at.desc(), DeliveryRow.sequence.desc()).limit(limit)
    if subscription_id is not None:
        query = query.where(DeliveryRow.subscription_id == subscription_id)
    if status is not None:
        query = query.where(DeliveryRow.status == status)
    if channel is not None:
        query = query.where(DeliveryRow.channel == channel)
    return list((await session.scalars(query)).all())


async def attempts_of(session: AsyncSession, delivery_ids: Collection[uuid.UUID]) -> list[AttemptRow]:
    if not delivery_ids:
        return []
    query = select(AttemptRow).where(AttemptRow.delivery_id.in_(list(delivery_ids))).order_by(AttemptRow.id)
    return list((await session.scalars(query)).all())


async def last_successes(session: AsyncSession, subscription_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each subscription last had a webhook answered with a 2xx; a subscription that never had one is
    absent."""
    if not subscription_ids:
        return {}
    query = (
        select(DeliveryRow.subscription_id, func.max(AttemptRow.attempted_at))
        .join(AttemptRow, AttemptRow.delivery_id == DeliveryRow.id)
        .where(
            DeliveryRow.subscription_id.in_(list(subscription_ids)),
            AttemptRow.status_code >= 200,
            AttemptRow.status_code < 300,
        )
        .group_by(DeliveryRow.subscription_id)
    )
    rows = (await session.execute(query)).all()
    return {subscription_id: at for subscription_id, at in rows if subscription_id is not None}


async def insert_new_mail(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert e-mail deliveries, skipping any whose (msg_id, recipient) is planned already (a replay)."""
    if rows:
        await session.execute(insert_ignore(session, table_of(DeliveryRow), ["msg_id", "recipient"]), list(rows))


async def insert_new_items(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert digest items, skipping any whose (msg_id, recipient) is waiting or carried already (a replay)."""
    if rows:
        await session.execute(insert_ignore(session, table_of(DigestItemRow), ["msg_id", "recipient"]), list(rows))


async def insert_digest(session: AsyncSession, row: Mapping[str, Any]) -> bool:
    """Insert one digest delivery unless that person's digest of that day is planned already (by another
    notifier); whether this one was inserted."""
    insert = insert_ignore(session, table_of(DeliveryRow), ["msg_id", "recipient"])
    return (await session.execute(insert.values(**row).returning(table_of(DeliveryRow).c.id))).first() is not None


async def preference_of(session: AsyncSession, principal_id: uuid.UUID) -> PreferenceRow | None:
    return await session.get(PreferenceRow, principal_id)
