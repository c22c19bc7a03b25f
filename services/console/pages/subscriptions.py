"""Subscriptions and deliveries: the webhook, Slack and Teams endpoints with their filters and health, a
subscription's recent deliveries, a delivery's attempts log and resend; creating a webhook subscription shows its
signing secret once (a Slack or Teams one has none: its URL is the credential, never shown again)."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.forms import placed, split
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done
from services.contracts.triggers import Category, Severity

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATUSES = ("pending", "delivered", "failed")
CATEGORIES = tuple(category.value for category in Category)
SEVERITIES = tuple(severity.value for severity in Severity)
CHOICES = ("categories", "severities")
"""Fields given as a group of checkboxes (several values under one name)."""
CHANNELS = (
    ("webhook", "Webhook (Standard Webhooks, signed)"),
    ("slack", "Slack incoming webhook"),
    ("teams", "Microsoft Teams workflow webhook"),
)
CHAT = frozenset({"slack", "teams"})
DELIVERIES_SHOWN = 50
WORDS = {"event_types": "Use event types in lower case: exact (review.opened), a prefix (review.*) or * for all."}
BOXES = (
    "channel",
    "url",
    "description",
    "event_types",
    *CHOICES,
    "scopes",
    "rate_limit_per_s",
    "restricted_data",
)
"""The new subscription form's fields that show their own validation message."""


def _number(text: str) -> float | str:
    """A number for the API (which takes no numbers in strings); anything else as typed, for the API to
    refuse in words (a non-finite number too: JSON has none)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _subscription_body(action: Acting) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": action.text("url"),
        "channel": action.text("channel") or "webhook",
        "event_types": split(action.text("event_types")),
        "categories": action.lists.get("categories", []),
        "severities": action.lists.get("severities", []),
        "scopes": split(action.text("scopes")),
        "enabled": bool(action.text("enabled")),
        "restricted_data": bool(action.text("restricted_data")),
    }
    if action.text("description"):
        body["description"] = action.text("description")
    if action.text("rate_limit_per_s"):
        body["rate_limit_per_s"] = _number(action.text("rate_limit_per_s"))
    return body


async def list_page(
    page: Page,
    *,
    status: int = 200,
    problem: ApiProblem | None = None,
    values: dict[str, str] | None = None,
    chosen: dict[str, list[str]] | None = None,
) -> HTMLResponse:
    """The endpoints and the form for a new one; after a refused creation, the problem beside its field and
    what the person typed kept."""
    subscriptions = await page.api.get("/v1/subscriptions")
    return page.render(
        "subscriptions.html",
        status=status,
        subscriptions=subscriptions,
        problem=problem,
        **placed(problem.by_field() if problem else {}, BOXES, WORDS),
        values=values if values is not None else {"enabled": "on"},
        chosen=chosen or {},
        channels=CHANNELS,
        categories=CATEGORIES,
        severities=SEVERITIES,
    )


@router.get("/subscriptions")
async def subscriptions(page: Viewing) -> HTMLResponse:
    return await list_page(page)


@router.post("/subscriptions")
async def create(action: Acting) -> Response:
    try:
        created = await action.api.send("POST", "/v1/subscriptions", _subscription_body(action))
    except ApiProblem as problem:
        if problem.status >= 500:
            raise
        kept = {key: value for key, value in action.form.items() if key not in ("csrf_token", *CHOICES)}
        if kept.get("channel") in CHAT:
            kept.pop("url", None)  # a Slack or Teams URL is the credential: never shown again, not even here
        chosen = {name: action.lists.get(name, []) for name in CHOICES}
        return await list_page(action, status=problem.status, problem=problem, values=kept, chosen=chosen)
    return action.render("secret.html", status=201, subscription=created, secret=created["secret"], rotated=False)


async def subscription_page(
    page: Page, subscription_id: uuid.UUID, *, state: str = "", status: int = 200, problem: ApiProblem | None = None
) -> HTMLResponse:
    subscription = await page.api.get(f"/v1/subscriptions/{subscription_id}")
    notices = await page.api.get(f"/v1/subscriptions/{subscription_id}/notices")
    deliveries = await page.api.get(
        "/v1/deliveries",
        {"subscription_id": str(subscription_id), "status": state or None, "limit": DELIVERIES_SHOWN},
    )
    return page.render(
        "subscription.html",
        status=status,
        subscription=subscription,
        notices=notices,
        deliveries=deliveries,
        state=state,
        statuses=STATUSES,
        shown=DELIVERIES_SHOWN,
        problem=problem,
    )


@router.get("/subscriptions/{subscription_id}")
async def show(
    subscription_id: uuid.UUID,
    page: Viewing,
    status: Annotated[str, Query(pattern=f"^({'|'.join(STATUSES)})?$")] = "",
) -> HTMLResponse:
    return await subscription_page(page, subscription_id, state=status)


@router.post("/subscriptions/{subscription_id}/enabled")
async def set_enabled(subscription_id: uuid.UUID, action: Acting) -> Response:
    enabled = action.text("enabled") == "true"
    try:
        await action.api.send("PATCH", f"/v1/subscriptions/{subscription_id}", {"enabled": enabled})
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status == 404:
            raise
        return await subscription_page(action, subscription_id, status=problem.status, problem=problem)
    message = (
        "Enabled: new events are delivered again (its failure streak starts afresh)."
        if enabled
        else "Disabled: no webhook is sent to it until it is enabled again."
    )
    return done(f"/subscriptions/{subscription_id}", message)


@router.post("/subscriptions/{subscription_id}/secret")
async def rotate(subscription_id: uuid.UUID, action: Acting) -> Response:
    rotated = await action.api.send("POST", f"/v1/subscriptions/{subscription_id}/secret/rotate")
    subscription = await action.api.get(f"/v1/subscriptions/{subscription_id}")
    return action.render(
        "secret.html",
        subscription=subscription,
        secret=rotated["secret"],
        rotated=True,
        previous_until=rotated["previous_secret_valid_until"],
    )


async def delivery_page(
    page: Page,
    subscription_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    status: int = 200,
    problem: ApiProblem | None = None,
) -> HTMLResponse:
    delivery = await page.api.get(f"/v1/deliveries/{delivery_id}")
    if delivery["subscription_id"] != str(subscription_id):
        raise ApiProblem(status=404, title="Not Found", detail=f"no delivery {delivery_id} of this subscription")
    subscription = await page.api.get(f"/v1/subscriptions/{subscription_id}")
    return page.render("delivery.html", status=status, delivery=delivery, subscription=subscription, problem=problem)


@router.get("/subscriptions/{subscription_id}/deliveries/{delivery_id}")
async def delivery(subscription_id: uuid.UUID, delivery_id: uuid.UUID, page: Viewing) -> HTMLResponse:
    return await delivery_page(page, subscription_id, delivery_id)


@router.post("/subscriptions/{subscription_id}/deliveries/{delivery_id}/resend")
async def resend(subscription_id: uuid.UUID, delivery_id: uuid.UUID, action: Acting) -> Response:
    try:
        await action.api.send("POST", f"/v1/deliveries/{delivery_id}/resend")
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status == 404:
            raise
        return await delivery_page(action, subscription_id, delivery_id, status=problem.status, problem=problem)
    return done(
        f"/subscriptions/{subscription_id}/deliveries/{delivery_id}",
        "Resent: the delivery is pending again with a fresh retry schedule (same webhook-id); "
        "its new attempts are listed below as they are made.",
    )
