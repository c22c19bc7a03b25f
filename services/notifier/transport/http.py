"""Subscriptions and deliveries API (scope `subscriptions:admin`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import AnyHttpUrl, BaseModel, Field
from sqlalchemy import select

from services.core.auth import SubscriptionsAdmin
from services.core.http import ProblemError
from services.core.runtime import Runtime
from services.notifier.egress import EgressRefused, resolve_checked
from services.notifier.persistence import AttemptRow, DeliveryRow, SubscriptionRow
from services.notifier.signing import generate_secret


class SubscriptionIn(BaseModel):
    url: AnyHttpUrl
    event_types: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, description="exact types or prefixes like `review.*`; empty = all"
    )
    description: Annotated[str, Field(max_length=500)] | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    created_at: datetime


class SubscriptionCreatedOut(SubscriptionOut):
    secret: str = Field(description="the signing secret; shown only in this response")


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    response: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    msg_id: str
    subscription_id: uuid.UUID
    event_type: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    attempts: list[AttemptOut]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifier"])

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionCreatedOut)
    async def create_subscription(body: SubscriptionIn, _auth: SubscriptionsAdmin) -> SubscriptionCreatedOut:
        url = str(body.url)
        try:
            await resolve_checked(url, runtime.settings.allow_networks)
        except EgressRefused as exc:
            raise ProblemError(422, "Webhook target refused", str(exc), field="url") from exc
        row = SubscriptionRow(
            id=uuid.uuid4(),
            url=url,
            secret=generate_secret(),
            event_types=body.event_types,
            description=body.description,
            enabled=True,
            created_at=datetime.now(UTC),
        )
        async with runtime.uow.begin() as session:
            session.add(row)
        return SubscriptionCreatedOut(**_out(row).model_dump(), secret=row.secret)

    @router.get("/subscriptions", response_model=list[SubscriptionOut])
    async def list_subscriptions(_auth: SubscriptionsAdmin) -> list[SubscriptionOut]:
        async with runtime.uow.begin() as session:
            rows = (await session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.created_at))).all()
        return [_out(row) for row in rows]

    @router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def get_subscription(subscription_id: uuid.UUID, _auth: SubscriptionsAdmin) -> SubscriptionOut:
        async with runtime.uow.begin() as session:
            row = await session.get(SubscriptionRow, subscription_id)
        if row is None:
            raise ProblemError(404, "Not Found", f"no subscription {subscription_id}")
        return _out(row)

    @router.delete("/subscriptions/{subscription_id}", status_code=204)
    async def disable_subscription(subscription_id: uuid.UUID, _auth: SubscriptionsAdmin) -> Response:
        """Disables (keeps the delivery log); nothing more is sent to it."""
        async with runtime.uow.begin() as session:
            row = await session.get(SubscriptionRow, subscription_id)
            if row is None:
                raise ProblemError(404, "Not Found", f"no subscription {subscription_id}")
            row.enabled = False
        return Response(status_code=204)

    @router.get("/deliveries", response_model=list[DeliveryOut])
    async def list_deliveries(
        _auth: SubscriptionsAdmin,
        subscription_id: uuid.UUID | None = None,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[DeliveryOut]:
        query = select(DeliveryRow).order_by(DeliveryRow.created_at.desc()).limit(limit)
        if subscription_id is not None:
            query = query.where(DeliveryRow.subscription_id == subscription_id)
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        async with runtime.uow.begin() as session:
            deliveries = (await session.scalars(query)).all()
            attempts = (
                await session.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.delivery_id.in_([d.id for d in deliveries]))
                    .order_by(AttemptRow.id)
                )
            ).all()
        by_delivery: dict[uuid.UUID, list[AttemptOut]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(
                AttemptOut.model_validate(attempt, from_attributes=True)
            )
        return [
            DeliveryOut(
                id=d.id,
                msg_id=d.msg_id,
                subscription_id=d.subscription_id,
                event_type=d.event_type,
                status=d.status,
                attempt_count=d.attempt_count,
                next_attempt_at=d.next_attempt_at,
                attempts=by_delivery.get(d.id, []),
            )
            for d in deliveries
        ]

    return router


def _out(row: SubscriptionRow) -> SubscriptionOut:
    return SubscriptionOut(
        id=row.id,
        url=row.url,
        event_types=row.event_types,
        description=row.description,
        enabled=row.enabled,
        created_at=row.created_at,
    )
