"""E-mail: the mails smits sent or is sending to people (campaigns, notices, digests), newest first, each with
its attempts log (SMTP reply codes) and Resend for a failed one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATUSES = ("pending", "delivered", "failed")
SHOWN = 100


@router.get("/mail")
async def mails(
    page: Viewing, status: Annotated[str, Query(pattern=f"^({'|'.join(STATUSES)})?$")] = ""
) -> HTMLResponse:
    query = {"channel": "email", "limit": str(SHOWN), **({"status": status} if status else {})}
    found = await page.api.get("/v1/deliveries", query)
    return page.render("mails.html", mails=found, state=status, states=STATUSES, shown=SHOWN)


async def mail_page(
    page: Page, delivery_id: uuid.UUID, *, status: int = 200, problem: ApiProblem | None = None
) -> HTMLResponse:
    delivery = await page.api.get(f"/v1/deliveries/{delivery_id}")
    if delivery["channel"] != "email":
        raise ApiProblem(status=404, title="Not Found", detail=f"no e-mail {delivery_id}")
    return page.render("mail.html", status=status, delivery=delivery, problem=problem)


@router.get("/mail/{delivery_id}")
async def mail(delivery_id: uuid.UUID, page: Viewing) -> HTMLResponse:
    return await mail_page(page, delivery_id)


@router.post("/mail/{delivery_id}/resend")
async def resend(delivery_id: uuid.UUID, action: Acting) -> Response:
    try:
        await action.api.send("POST", f"/v1/deliveries/{delivery_id}/resend")
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status == 404:
            raise
        return await mail_page(action, delivery_id, status=problem.status, problem=problem)
    return done(
        f"/mail/{delivery_id}",
        "Resent: the e-mail is pending again with a fresh retry schedule (the same message and Message-ID); "
        "its new attempts are listed below as they are made.",
    )
