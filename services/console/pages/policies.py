"""Policies: the set in force, in evaluation order, and a dry run ("what would this event do now")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.console import words
from services.console.api import ApiProblem, FieldError
from services.console.web import Acting, ConsoleRoute, Page, Viewing
from services.contracts.triggers import TYPE_PREFIX, TYPE_SUFFIX, Category, Severity

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

FIELDS = ("category", "severity", "subject", "source", "data")
OUTCOMES = {
    "opened": "would open a new review",
    "attached": "would attach to an open review",
    "recorded": "would only be recorded: no review is opened or changed",
}


async def policies_page(
    page: Page,
    *,
    values: dict[str, str] | None = None,
    result: dict[str, Any] | None = None,
    problem: ApiProblem | None = None,
    status: int = 200,
) -> HTMLResponse:
    policy_set = await page.api.get("/v1/policies")
    errors = problem.by_field() if problem else {}
    return page.render(
        "policies.html",
        status=status,
        policies=policy_set["policies"],
        values=values or {},
        result=result,
        outcome_words=OUTCOMES.get(result["outcome"], result["outcome"]) if result else None,
        problem=problem,
        errors=errors,
        general=[(field, error) for field, error in errors.items() if field not in FIELDS],
        categories=[category.value for category in Category],
        severities=[severity.value for severity in Severity],
        period=words.period,
    )


@router.get("/policies")
async def policies(page: Viewing) -> HTMLResponse:
    return await policies_page(page)


@router.post("/policies/dry-run")
async def dry_run(action: Acting) -> HTMLResponse:
    values = {name: action.text(name) for name in FIELDS}
    unreadable: FieldError | None = None
    try:
        data = orjson.loads(values["data"] or "{}")
    except orjson.JSONDecodeError as exc:
        unreadable, data = FieldError(field="data", message=f"is not JSON ({exc})"), {}
    try:
        result = await action.api.send("POST", "/v1/policies/dry-run", _event(values, data))
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status in (401, 403, 404):
            raise
        if unreadable is not None:  # the other fields' errors too, so all are seen at once
            problem.errors.insert(0, unreadable)
            problem.detail = f"data: {unreadable.message}; {problem.detail}"
        return await policies_page(action, values=values, problem=problem, status=problem.status)
    if unreadable is not None:
        refused = ApiProblem(
            status=422, title="Request validation failed", detail="data: is not JSON", errors=[unreadable]
        )
        return await policies_page(action, values=values, problem=refused, status=422)
    return await policies_page(action, values=values, result=result)


def _event(values: dict[str, str], data: object) -> dict[str, object]:
    """The `TriggerAccepted` v1 event the form describes, as if it had been received now."""
    now = datetime.now(UTC).isoformat()
    return {
        "source": values["source"],
        "id": f"console-dry-run-{uuid.uuid4().hex[:12]}",
        "type": f"{TYPE_PREFIX}{values['category'] or 'unknown'}{TYPE_SUFFIX}",
        "category": values["category"],
        "severity": values["severity"],
        "subject": values["subject"],
        "occurred_at": now,
        "received_at": now,
        "data": data,
    }
