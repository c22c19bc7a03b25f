"""My work: the reviews I own, approvals waiting on me, documents I must acknowledge, what is overdue."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.console.web import ConsoleRoute, Viewing

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
async def my_work(page: Viewing) -> HTMLResponse:
    pending = await page.api.get("/v1/me/pending")
    return page.render("work.html", pending=pending)
