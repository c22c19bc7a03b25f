"""The board: open reviews by PDCA phase (columns) or as a table, filtered, sorted, paged, saved per person,
and refreshed while it is open."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.console import persistence
from services.console.api import ApiProblem, Viewer
from services.console.web import Acting, ConsoleRoute, Viewing, done
from services.core.http import request_id
from services.core.identity import audit
from services.core.identity.model import AuthMethod

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PHASES = ("triage", "assess", "generate", "approval", "publish", "execute", "monitor", "adjust")
STATES = (*PHASES, "closed", "cancelled", "merged")
SEVERITIES = ("low", "medium", "high", "critical")
SORTS = {
    "-opened_at": "newest first",
    "opened_at": "oldest first",
    "due_at": "due soonest",
    "-due_at": "due latest",
    "-severity": "most severe",
    "severity": "least severe",
    "title": "title A to Z",
}
Text = Annotated[str, Query(max_length=200)]


def _query(values: dict[str, str], **changes: str) -> str:
    merged = {key: value for key, value in {**values, **changes}.items() if value}
    return urlencode(merged)


@router.get("/board")
async def board(
    page: Viewing,
    layout: Annotated[str, Query(pattern="^(columns|table)$")] = "columns",
    state: Text = "",
    category: Text = "",
    severity: Text = "",
    owner: Text = "",
    org_unit: Text = "",
    overdue: Text = "",
    opened_from: Text = "",
    opened_to: Text = "",
    q: Text = "",
    sort: Text = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> HTMLResponse:
    filters = {
        "state": state,
        "category": category,
        "severity": severity,
        "owner": owner,
        "org_unit": org_unit,
        "overdue": overdue if overdue in ("true", "false") else "",
        "opened_from": _day(opened_from, end=False),
        "opened_to": _day(opened_to, end=True),
        "q": q,
        "sort": sort if sort in SORTS else "",
    }
    limit = 200 if layout == "columns" else 50
    result = await page.api.get("/v1/reviews", {**filters, "cursor": cursor, "limit": limit})
    items: list[dict[str, Any]] = result["items"]
    if layout == "columns" and not state:
        items = [item for item in items if item["state"] in PHASES]
    shown = {
        key: value
        for key, value in {
            "state": state,
            "category": category,
            "severity": severity,
            "owner": owner,
            "org_unit": org_unit,
            "overdue": filters["overdue"],
            "opened_from": opened_from,
            "opened_to": opened_to,
            "q": q,
            "sort": filters["sort"],
        }.items()
    }
    here = _query({**shown, "layout": layout})
    async with page.request.app.state.runtime.uow.begin() as session:
        views = await persistence.views_of(session, page.viewer.id) if page.viewer.id else []
    return page.render(
        "board.html",
        items=items,
        columns={phase: [item for item in items if item["state"] == phase] for phase in PHASES},
        layout=layout,
        filters=shown,
        here=here,
        next_page=_query({**shown, "layout": layout}, cursor=result["next_cursor"]) if result["next_cursor"] else None,
        table_link=_query({**shown, "layout": "table"}),
        columns_link=_query({**shown, "layout": "columns"}),
        sort_link=lambda key: _query({**shown, "layout": "table"}, sort=key),
        views=views,
        states=STATES,
        severities=SEVERITIES,
        sorts=SORTS,
        refreshed_at=datetime.now(UTC),
    )


def _day(value: str, *, end: bool) -> str:
    """A date from the filter form (`2026-11-24`) as the instant the API expects; other text as given."""
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value}T23:59:59+00:00" if end else f"{value}T00:00:00+00:00"
    return value


def _owner(viewer: Viewer) -> str:
    """Whose saved views: the principal's id (an e-mail or a name could be shared or cut)."""
    if viewer.id is None:
        raise ApiProblem(status=403, title="Forbidden", detail="Saved views belong to a signed-in person.")
    return viewer.id


async def _audit(
    session: AsyncSession, action: Acting, what: str, name: str, now: datetime, *, after: object = None
) -> None:
    """Saved views are the person's own, written by the console itself: audited here, as the API audits its writes."""
    await audit.record(
        session,
        principal=action.viewer.email or action.viewer.name,
        method=AuthMethod.SESSION.value,
        action=what,
        target=f"saved_view:{name}",
        now=now,
        request_id=request_id(action.request),
        after=after,
    )


@router.post("/board/views")
async def save_view(action: Acting) -> Response:
    name = action.text("name")[:100]
    query = action.text("query")[:2000]
    if not name:
        raise ApiProblem(status=422, title="Request validation failed", detail="Give the view a name to save it.")
    now = datetime.now(UTC)
    async with action.request.app.state.runtime.uow.begin() as session:
        saved = await persistence.save_view(session, principal=_owner(action.viewer), name=name, query=query, now=now)
        if saved:
            await _audit(session, action, "saved_view.create", name, now, after={"name": name, "query": query})
    if not saved:
        raise ApiProblem(
            status=409,
            title="Conflict",
            detail=f"You have {persistence.MAX_VIEWS} saved views already; delete one to save another.",
        )
    return done(f"/board?{query}", f"Saved the view “{name}”.")


@router.post("/board/views/delete")
async def delete_view(action: Acting) -> Response:
    name = action.text("name")[:100]
    now = datetime.now(UTC)
    async with action.request.app.state.runtime.uow.begin() as session:
        if await persistence.delete_view(session, principal=_owner(action.viewer), name=name):
            await _audit(session, action, "saved_view.delete", name, now)
    return done("/board", f"Deleted the view “{name}”.")
