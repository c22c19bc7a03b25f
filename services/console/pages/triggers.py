"""Triggers: accepted, duplicates and rejected (with the reason in words), paged; a trigger's CloudEvent and the
engine's decision on it."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from services.console import words
from services.console.api import ApiProblem
from services.console.web import ConsoleRoute, Viewing, trigger_href
from services.contracts.triggers import Category

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATUSES = {"accepted": "Accepted", "duplicate": "Duplicates", "rejected": "Rejected"}
PAGE_SIZE = 50
Text = Annotated[str, Query(max_length=500)]


def day(value: str) -> str:
    """A date from a filter form (`2026-11-24`) as the start of that day in UTC; other text as given."""
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value}T00:00:00+00:00"
    return value


@router.get("/triggers")
async def triggers(
    page: Viewing,
    status: Text = "accepted",
    category: Text = "",
    source: Text = "",
    since: Text = "",
    cursor: Text = "",
) -> HTMLResponse:
    status = status if status in STATUSES else "accepted"
    filters = {"category": category if status == "accepted" else "", "source": source, "since": since}
    problem: ApiProblem | None = None
    try:
        result = await page.api.get(
            "/v1/triggers",
            {**filters, "status": status, "since": day(since), "cursor": cursor, "limit": PAGE_SIZE},
        )
    except ApiProblem as refused:
        if refused.status not in (400, 422):
            raise
        problem, result = refused, {"items": [], "next_cursor": None}
    items: list[dict[str, Any]] = result["items"]
    for item in items:
        item["href"] = trigger_href(item["source"], item["id"]) if item["source"] and item["id"] else None
        item["reason_words"] = words.reason(item["reason"]) if item.get("reason") else None
    kept = {key: value for key, value in filters.items() if value}
    return page.render(
        "triggers.html",
        status=problem.status if problem else 200,
        tab=status,
        statuses=STATUSES,
        items=items,
        filters=filters,
        problem=problem,
        errors=problem.by_field() if problem else {},
        categories=[category.value for category in Category],
        tab_link=lambda key: urlencode({**kept, "status": key}),
        next_page=urlencode({**kept, "status": status, "cursor": result["next_cursor"]})
        if result["next_cursor"]
        else None,
    )


@router.get("/triggers/by-id")
async def trigger_by_id(
    page: Viewing,
    source: Annotated[str, Query(min_length=1, max_length=1000)],
    id: Annotated[str, Query(min_length=1, max_length=1000)],
) -> HTMLResponse:
    return await trigger(source, id, page)


@router.get("/triggers/{source:path}/{event_id}")
async def trigger(source: str, event_id: str, page: Viewing) -> HTMLResponse:
    which = {"source": source, "id": event_id}
    try:
        found = await page.api.get("/v1/triggers/by-id", which)
    except ApiProblem as missing:
        if missing.status != 404:
            raise
        raise ApiProblem(
            status=404, title="No such trigger", detail="There is no trigger with this source and id that you can see."
        ) from missing
    decision: dict[str, Any] | None = None
    no_decision: str | None = None
    if found["status"] == "accepted":
        try:
            decision = await page.api.get("/v1/decisions/by-id", which)
        except ApiProblem as missing:
            if missing.status != 404:
                raise
            no_decision = missing.detail
    event = None
    if found["status"] == "accepted":
        event = {
            "specversion": "1.0",
            "id": found["id"],
            "source": found["source"],
            "type": found["type"],
            "subject": found["subject"],
            "time": found["occurred_at"],
            "datacontenttype": "application/json",
            "data": found["data"],
        }
    return page.render(
        "trigger.html",
        trigger=found,
        event_json=orjson.dumps(event, option=orjson.OPT_INDENT_2).decode() if event else None,
        decision=decision,
        no_decision=no_decision,
        reason_words=words.reason(found["reason"]) if found.get("reason") else None,
    )
