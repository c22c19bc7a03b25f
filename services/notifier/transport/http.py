"""Subscriptions, secret rotation, deliveries and resend (scope `subscriptions:admin`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, Strict
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.triggers import Category, Severity
from services.core.auth import Caller, SubscriptionsAdmin
from services.core.db import get_row, one_snapshot
from services.core.http import Patch, ProblemError, fits, request_id
from services.core.identity import audit
from services.core.runtime import Runtime
from services.notifier import persistence
from services.notifier.egress import EgressRefused, check_url
from services.notifier.persistence import Channel, DeliveryRow, SubscriptionRow
from services.notifier.retries import RATE_MAX_PER_S, RATE_MIN_PER_S, DeliveryStatus
from services.notifier.signing import generate_secret
from services.notifier.transport import preferences

EventType = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^(\*|[a-z_.]+(\.\*)?)$")]
Scope = Annotated[str, Field(min_length=1, max_length=500)]
T = TypeVar("T")
FILTER_MAX_ITEMS = 100
Filter = Annotated[list[T], Field(max_length=FILTER_MAX_ITEMS)]
"""A subscription filter: every planned event is matched against it, so its length is bounded."""
RESTRICTED_DATA = (
    "cleared for restricted (need-to-know) reviews: their events arrive in full; otherwise only their type, time "
    "and ids. Every change is audited."
)


def _port_given(url: AnyHttpUrl) -> AnyHttpUrl:
    if url.port == 0:
        raise ValueError("port 0 cannot be connected to")
    return url


WebhookUrl = Annotated[AnyHttpUrl, fits(2000), AfterValidator(_port_given)]
"""The column holds 2,000 characters of the URL as normalised (percent-encoded), not as typed."""
RatePerS = Annotated[
    float,
    Strict(),  # a JSON number: `true` or "0.5" are refused, not coerced
    Field(
        ge=RATE_MIN_PER_S,
        le=RATE_MAX_PER_S,
        allow_inf_nan=False,
        description=f"webhooks a second at most, {RATE_MIN_PER_S:g} to {RATE_MAX_PER_S:g}; null = unlimited",
    ),
]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt filter would otherwise widen the subscription

    url: WebhookUrl
    event_types: Filter[EventType] = Field(default_factory=list, description="exact or `prefix.*`; empty = all")
    categories: Filter[Category] = Field(default_factory=list, description="empty = all")
    severities: Filter[Severity] = Field(default_factory=list, description="empty = all")
    scopes: Filter[Scope] = Field(default_factory=list, description="review scopes (trigger subject); empty = all")
    description: Annotated[str, Field(max_length=500)] | None = None
    enabled: bool = True
    rate_limit_per_s: RatePerS | None = None
    restricted_data: bool = Field(default=False, description=RESTRICTED_DATA)


class SubscriptionPatch(Patch):
    nullable = frozenset({"description", "rate_limit_per_s"})

    url: WebhookUrl | None = None
    event_types: Filter[EventType] | None = None
    categories: Filter[Category] | None = None
    severities: Filter[Severity] | None = None
    scopes: Filter[Scope] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    enabled: bool | None = None
    rate_limit_per_s: RatePerS | None = None
    restricted_data: bool | None = Field(default=None, description=RESTRICTED_DATA)


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    categories: list[str]
    severities: list[str]
    scopes: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    rate_limit_per_s: float | None
    restricted_data: bool
    created_at: datetime
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None = Field(
        description="when its current run of failed attempts began (it is disabled after "
        "SMITS_WEBHOOK_DISABLE_AFTER_S of it); null while its webhooks succeed"
    )
    last_success_at: datetime | None = Field(description="when a webhook was last answered with a 2xx; null: never")


HEALTH = frozenset({"failing_since", "last_success_at"})
"""What `SubscriptionOut` reports of how its deliveries go, beside its configuration (left out of audit records,
which are about changes)."""


class SecretOut(BaseModel):
    secret: str = Field(description="the signing secret; shown only in this response")


class SubscriptionCreatedOut(SubscriptionOut, SecretOut):
    pass


class RotatedOut(SecretOut):
    previous_secret_valid_until: datetime


class NoticeOut(BaseModel):
    type: str
    at: datetime
    detail: str


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    response: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    msg_id: str
    channel: str = Field(description="`webhook` or `email`")
    subscription_id: uuid.UUID | None = Field(description="a webhook's subscription; null for an e-mail")
    recipient: str | None = Field(description="an e-mail's address; null for a webhook")
    event_type: str
    review_id: str | None
    sequence: int
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    attempts: list[AttemptOut]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifier"])

    async def checked(url: AnyHttpUrl) -> str:
        try:
            await check_url(str(url), runtime.settings.allow_networks)
        except EgressRefused as exc:
            raise ProblemError(422, "Webhook target refused", str(exc), field="url") from exc
        return str(url)

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionCreatedOut)
    async def create_subscription(
        request: Request, body: SubscriptionIn, caller: SubscriptionsAdmin
    ) -> SubscriptionCreatedOut:
        """The URL must resolve to permitted addresses only. The `whsec_` secret is returned this once."""
        now = datetime.now(UTC)
        row = SubscriptionRow(
            id=uuid.uuid4(),
            url=await checked(body.url),
            secret=generate_secret(),
            created_at=now,
            **body.model_dump(exclude={"url"}, mode="json"),
        )
        async with runtime.uow.begin() as session:
            session.add(row)
            await session.flush()
            out = _out(row, last_success=None)
            await audit.record_by(
                session,
                caller,
                action="subscription.create",
                target=f"subscription:{row.id}",
                now=now,
                request_id=request_id(request),
                after=_audited(out),
                detail={"url": out.url},
            )
            if row.restricted_data:
                await _audit_clearance(session, request, caller, row, before=None)
        return SubscriptionCreatedOut(**out.model_dump(), secret=row.secret)

    @router.get("/subscriptions", response_model=list[SubscriptionOut])
    async def list_subscriptions(_auth: SubscriptionsAdmin) -> list[SubscriptionOut]:
        """Each with its health: failing since when, and its last success."""
        async with runtime.uow.begin() as session:
            rows = await persistence.live_subscriptions(session)
            successes = await persistence.last_successes(session, [row.id for row in rows])
        return [_out(row, last_success=successes.get(row.id)) for row in rows]

    @router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def get_subscription(subscription_id: uuid.UUID, _auth: SubscriptionsAdmin) -> SubscriptionOut:
        async with runtime.uow.begin() as session:
            return await _with_health(session, await _subscription(session, subscription_id))

    @router.patch("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def update_subscription(
        request: Request, subscription_id: uuid.UUID, body: SubscriptionPatch, caller: SubscriptionsAdmin
    ) -> SubscriptionOut:
        """Change what is given; enabling again clears the disabled reason and the failure streak."""
        changes = body.model_dump(exclude_unset=True, mode="json")
        if body.url is not None:
            changes["url"] = await checked(body.url)
        async with runtime.uow.begin() as session:
            row = await _subscription(session, subscription_id)
            before = _audited(_out(row, last_success=None))
            cleared_before = row.restricted_data
            for name, value in changes.items():
                setattr(row, name, value)
            if row.restricted_data != cleared_before:
                await _audit_clearance(session, request, caller, row, before=cleared_before)
            if changes.get("enabled"):
                row.disabled_reason, row.failing_since = None, None
            out = await _with_health(session, row)
            await audit.record_by(
                session,
                caller,
                action="subscription.update",
                target=f"subscription:{subscription_id}",
                now=datetime.now(UTC),
                request_id=request_id(request),
                before=before,
                after=_audited(out),
                detail={"changed": ",".join(sorted(changes))},
            )
            return out

    @router.delete("/subscriptions/{subscription_id}", status_code=204)
    async def delete_subscription(request: Request, subscription_id: uuid.UUID, caller: SubscriptionsAdmin) -> Response:
        """Stops all deliveries to it; its delivery log stays readable under /v1/deliveries."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            row = await _subscription(session, subscription_id)
            before = _audited(_out(row, last_success=None))
            row.enabled, row.deleted_at = False, now
            await audit.record_by(
                session,
                caller,
                action="subscription.delete",
                target=f"subscription:{subscription_id}",
                now=now,
                request_id=request_id(request),
                before=before,
                detail={"url": row.url},
            )
        return Response(status_code=204)

    @router.post("/subscriptions/{subscription_id}/secret/rotate", response_model=RotatedOut)
    async def rotate_secret(request: Request, subscription_id: uuid.UUID, caller: SubscriptionsAdmin) -> RotatedOut:
        """New secret now; the old one stays valid (both signatures are sent) for the grace period."""
        now = datetime.now(UTC)
        until = now + timedelta(seconds=runtime.settings.webhook_secret_grace_s)
        async with runtime.uow.begin() as session:
            row = await _subscription(session, subscription_id)
            row.previous_secret, row.previous_secret_expires_at = row.secret, until
            row.secret = generate_secret()
            await audit.record_by(  # never the secrets, not even their digests
                session,
                caller,
                action="subscription.rotate_secret",
                target=f"subscription:{subscription_id}",
                now=now,
                request_id=request_id(request),
                detail={"previous_secret_valid_until": until.isoformat()},
            )
            return RotatedOut(secret=row.secret, previous_secret_valid_until=until)

    @router.get("/subscriptions/{subscription_id}/notices", response_model=list[NoticeOut])
    async def list_notices(subscription_id: uuid.UUID, _auth: SubscriptionsAdmin) -> list[NoticeOut]:
        async with runtime.uow.begin() as session:
            await _subscription(session, subscription_id)
            rows = await persistence.notices_of(session, subscription_id)
        return [NoticeOut(type=row.type, at=row.at, detail=row.detail) for row in rows]

    @router.get("/deliveries", response_model=list[DeliveryOut])
    async def list_deliveries(
        _auth: SubscriptionsAdmin,
        subscription_id: uuid.UUID | None = None,
        status: Annotated[str | None, Query(pattern=f"^({'|'.join(DeliveryStatus)})$")] = None,
        channel: Annotated[str | None, Query(pattern=f"^({'|'.join(Channel)})$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[DeliveryOut]:
        """Newest first, webhooks and e-mails, each with every attempt (status: the HTTP status of a webhook,
        the SMTP reply code of an e-mail; duration; truncated response or error)."""
        async with runtime.uow.begin() as session:
            await one_snapshot(session)  # an attempt is never listed next to its delivery's status from before it
            deliveries = await persistence.recent_deliveries(
                session, subscription_id=subscription_id, status=status, channel=channel, limit=limit
            )
            attempts = await persistence.attempts_of(session, [d.id for d in deliveries])
        by_delivery: dict[uuid.UUID, list[AttemptOut]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(
                AttemptOut.model_validate(attempt, from_attributes=True)
            )
        return [_delivery_out(d, by_delivery.get(d.id, [])) for d in deliveries]

    @router.get("/deliveries/{delivery_id}", response_model=DeliveryOut)
    async def get_delivery(delivery_id: uuid.UUID, _auth: SubscriptionsAdmin) -> DeliveryOut:
        """One delivery with every attempt (also of a deleted subscription)."""
        async with runtime.uow.begin() as session:
            await one_snapshot(session)
            delivery = await get_row(session, DeliveryRow, delivery_id, what="delivery")
            attempts = await persistence.attempts_of(session, [delivery.id])
        return _delivery_out(delivery, [AttemptOut.model_validate(a, from_attributes=True) for a in attempts])

    @router.post("/deliveries/{delivery_id}/resend", status_code=202, response_model=DeliveryOut)
    async def resend(request: Request, delivery_id: uuid.UUID, caller: SubscriptionsAdmin) -> DeliveryOut:
        """Send a failed delivery again now, with the same `webhook-id` (an e-mail: the same message and
        `Message-ID`) and a fresh retry schedule."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            delivery = await get_row(session, DeliveryRow, delivery_id, what="delivery")
            if delivery.subscription_id is not None:
                subscription = await _subscription(session, delivery.subscription_id)
                if not subscription.enabled and delivery.status == DeliveryStatus.FAILED:
                    raise ProblemError(409, "Conflict", "the subscription is disabled; enable it first")
            elif runtime.settings.smtp_host is None:
                raise ProblemError(409, "Conflict", "the e-mail channel is off (SMITS_SMTP_HOST is not set)")
            if delivery.status != DeliveryStatus.FAILED:
                raise ProblemError(409, "Conflict", f"delivery is {delivery.status}; only failed ones are resent")
            delivery.status, delivery.next_attempt_at, delivery.attempt_count = DeliveryStatus.PENDING, now, 0
            delivery.locked_until = None
            delivery.ready = True  # an explicit replay: it does not wait for later events of its review
            await audit.record_by(
                session,
                caller,
                action="delivery.resend",
                target=f"delivery:{delivery_id}",
                now=now,
                request_id=request_id(request),
                before={"status": DeliveryStatus.FAILED.value},
                after={"status": DeliveryStatus.PENDING.value},
                detail={
                    "subscription": str(delivery.subscription_id) if delivery.subscription_id else None,
                    "recipient": delivery.recipient,
                    "msg_id": delivery.msg_id,
                },
            )
            return _delivery_out(delivery, [])

    router.include_router(preferences.build_router(runtime))
    return router


async def _audit_clearance(
    session: AsyncSession, request: Request, caller: Caller, row: SubscriptionRow, *, before: bool | None
) -> None:
    """Clearing a subscription for restricted data (or withdrawing it) is an audited act of `caller`."""
    await audit.record_by(
        session,
        caller,
        action="subscription.clearance",
        target=f"subscription:{row.id}",
        now=datetime.now(UTC),
        request_id=request_id(request),
        before=None if before is None else {"restricted_data": before},
        after={"restricted_data": row.restricted_data},
        detail={"restricted_data": row.restricted_data},
    )


async def _subscription(session: AsyncSession, subscription_id: uuid.UUID) -> SubscriptionRow:
    row = await persistence.live_subscription(session, subscription_id)
    if row is None:
        raise ProblemError(404, "Not Found", f"no subscription {subscription_id}")
    return row


def _out(row: SubscriptionRow, *, last_success: datetime | None) -> SubscriptionOut:
    stored = {name: getattr(row, name) for name in SubscriptionOut.model_fields if name != "last_success_at"}
    return SubscriptionOut(**stored, last_success_at=last_success)


async def _with_health(session: AsyncSession, row: SubscriptionRow) -> SubscriptionOut:
    successes = await persistence.last_successes(session, [row.id])
    return _out(row, last_success=successes.get(row.id))


def _audited(out: SubscriptionOut) -> dict[str, object]:
    """A subscription as its audit records hold it: its configuration, not its health."""
    return out.model_dump(mode="json", exclude=set(HEALTH))


def _delivery_out(delivery: DeliveryRow, attempts: list[AttemptOut]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        msg_id=delivery.msg_id,
        channel=delivery.channel,
        subscription_id=delivery.subscription_id,
        recipient=delivery.recipient,
        event_type=delivery.event_type,
        review_id=delivery.review_id,
        sequence=delivery.sequence,
        status=delivery.status,
        attempt_count=delivery.attempt_count,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        attempts=attempts,
    )
