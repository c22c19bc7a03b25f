"""Preferences: the signed-in person's own notice preferences (time zone, quiet hours, digest hour, and per kind of
notice at once, in the daily digest, or off), read from and saved to `/v1/me/preferences`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.forms import placed
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

KINDS = (
    ("approval_needed", "Your approval is needed", ("immediate", "digest")),
    ("document_published", "A document you must acknowledge was published", ("immediate", "digest")),
    ("reminder", "Reminders before and at a due date", ("immediate", "digest", "off")),
    ("escalation", "A review escalated to you", ("immediate", "digest", "off")),
)
BOXES = ("time_zone", "quiet_hours", "digest_hour", *(f"channels.email.{kind}" for kind, _, _ in KINDS))
WORDS = {"quiet_hours": "Give times of day as HH:MM, for example 22:00 and 07:00."}


def _body(action: Acting) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time_zone": action.text("time_zone"),
        "channels": {"email": {kind: action.text(f"channels.email.{kind}") for kind, _, _ in KINDS}},
    }
    start, end = action.text("quiet_start"), action.text("quiet_end")
    body["quiet_hours"] = {"start": start, "end": end} if start or end else None
    hour = action.text("digest_hour")
    body["digest_hour"] = int(hour) if hour.isdigit() else hour
    return body


def _values(preferences: dict[str, Any]) -> dict[str, str]:
    quiet = preferences.get("quiet_hours") or {}
    values = {
        "time_zone": str(preferences["time_zone"]),
        "quiet_start": str(quiet.get("start", "")),
        "quiet_end": str(quiet.get("end", "")),
        "digest_hour": str(preferences["digest_hour"]),
    }
    for kind, mode in preferences["channels"]["email"].items():
        values[f"channels.email.{kind}"] = str(mode)
    return values


async def _page(
    page: Page, *, values: dict[str, str], status: int = 200, problem: ApiProblem | None = None
) -> HTMLResponse:
    errors = {
        ("quiet_hours" if name.startswith("quiet_hours") else name): message
        for name, message in (problem.by_field() if problem else {}).items()
    }
    return page.render(
        "preferences.html",
        status=status,
        problem=problem,
        values=values,
        kinds=KINDS,
        **placed(errors, BOXES, WORDS),
    )


@router.get("/preferences")
async def preferences(page: Viewing) -> HTMLResponse:
    return await _page(page, values=_values(await page.api.get("/v1/me/preferences")))


@router.post("/preferences")
async def save(action: Acting) -> Response:
    try:
        await action.api.send("PUT", "/v1/me/preferences", _body(action))
    except ApiProblem as problem:
        if problem.status >= 500:
            raise
        kept = {key: value for key, value in action.form.items() if key != "csrf_token"}
        return await _page(action, values=kept, status=problem.status, problem=problem)
    return done("/preferences", "Your preferences are saved.")
