"""A review: summary, triggers and their decisions, the PDCA stepper with each blocked step's guard in words,
the assessment form, approvals, documents with their acknowledgement progress, and the timeline."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.forms import flatten, nest
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PHASES = ("triage", "assess", "generate", "approval", "publish", "execute", "monitor", "adjust", "closed")
RATINGS = ("none", "low", "medium", "high")
CONSTRAINT_TYPES = ("financial", "regulatory", "technical", "organisational", "contractual", "market", "other")
LEVELS = ("low", "medium", "high", "critical")
TREATMENTS = ("avoid", "mitigate", "transfer", "accept")
DOCUMENT_KINDS = (
    "strategy_assessment_report",
    "strategy_plan",
    "tactical_plan",
    "operational_plan",
    "strategy_review",
    "mission_and_vision",
)
OPPORTUNITY_ROWS = 3
CONSTRAINT_ROWS = 2
ASSESSMENT_PREFIXES = (
    "internal_analysis",
    "external_analysis",
    "impact.",
    "opportunities.",
    "constraints.",
    "risk.",
    "recommendation.",
    "approvers.",
    "affected_services",
    "affected_business_units",
    "financial_impact.",
)


async def review_page(
    page: Page,
    review_id: uuid.UUID,
    *,
    status: int = 200,
    problem: ApiProblem | None = None,
    where: str = "",
    assessment: dict[str, str] | None = None,
    document: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page; after a refused action, with the problem beside the form it came from (`where`) and what the
    person typed kept."""
    review = await page.api.get(f"/v1/reviews/{review_id}")
    timeline = await page.api.get(f"/v1/reviews/{review_id}/timeline")
    documents: list[dict[str, Any]] = []
    for document_id in dict.fromkeys(item["document_id"] for item in review["documents"]):
        documents.append(await page.api.get(f"/v1/documents/{document_id}"))
    current = review.get("assessment")
    values = assessment if assessment is not None else flatten(current["body"]) if current else {}
    approvers: list[str] = (current or {}).get("body", {}).get("approvers", {}).get("names", []) if current else []
    return page.render(
        "review.html",
        status=status,
        review=review,
        timeline=timeline,
        documents=documents,
        problem=problem,
        where=where,
        errors=problem.by_field() if problem else {},
        values=values,
        document_values=document or {},
        is_approver=bool(page.viewer.email) and page.viewer.email in approvers,
        phases=PHASES,
        ratings=RATINGS,
        constraint_types=CONSTRAINT_TYPES,
        levels=LEVELS,
        treatments=TREATMENTS,
        kinds=DOCUMENT_KINDS,
        opportunity_rows=range(OPPORTUNITY_ROWS),
        constraint_rows=range(CONSTRAINT_ROWS),
    )


@router.get("/reviews/{review_id}")
async def show(review_id: uuid.UUID, page: Viewing) -> HTMLResponse:
    return await review_page(page, review_id)


async def _attempt(action: Acting, review_id: uuid.UUID, where: str, method: str, path: str, body: object) -> None:
    """Send one write; a refusal (4xx) is shown on the review page beside the form it came from."""
    try:
        await action.api.send(method, path, body)
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status in (401, 404):
            raise
        raise _Refused(problem, where) from problem


class _Refused(Exception):
    def __init__(self, problem: ApiProblem, where: str) -> None:
        self.problem = problem
        self.where = where


async def _act(
    action: Acting,
    review_id: uuid.UUID,
    where: str,
    method: str,
    path: str,
    body: object,
    message: str,
    *,
    document: dict[str, str] | None = None,
) -> Response:
    try:
        await _attempt(action, review_id, where, method, path, body)
    except _Refused as refused:
        return await review_page(
            action, review_id, status=refused.problem.status, problem=refused.problem, where=where, document=document
        )
    return done(f"/reviews/{review_id}#{where}", message)


@router.post("/reviews/{review_id}/owner")
async def set_owner(review_id: uuid.UUID, action: Acting) -> Response:
    owner = action.text("owner") or None
    message = f"The owner is now {owner}." if owner else "The review has no owner now."
    return await _act(action, review_id, "summary", "PATCH", f"/v1/reviews/{review_id}", {"owner": owner}, message)


@router.post("/reviews/{review_id}/transition")
async def transition(review_id: uuid.UUID, action: Acting) -> Response:
    target = action.text("to")
    body: dict[str, str] = {"to": target}
    if action.text("reason"):
        body["reason"] = action.text("reason")
    path = f"/v1/reviews/{review_id}/transitions"
    return await _act(action, review_id, "phases", "POST", path, body, f"Moved to {target.replace('_', ' ')}.")


@router.post("/reviews/{review_id}/assessment")
async def assess(review_id: uuid.UUID, action: Acting) -> Response:
    fields = {key: value for key, value in action.form.items() if key.startswith(ASSESSMENT_PREFIXES)}
    path = f"/v1/reviews/{review_id}/assessments"
    try:
        await _attempt(action, review_id, "assessment", "POST", path, nest(fields))
    except _Refused as refused:
        return await review_page(
            action,
            review_id,
            status=refused.problem.status,
            problem=refused.problem,
            where="assessment",
            assessment=fields,
        )
    return done(f"/reviews/{review_id}#assessment", "Assessment recorded.")


@router.post("/reviews/{review_id}/approval")
async def approve(review_id: uuid.UUID, action: Acting) -> Response:
    body: dict[str, str] = {"version": action.text("version"), "verdict": action.text("verdict")}
    if action.text("comment"):
        body["comment"] = action.text("comment")
    words = {"approve": "Approved", "reject": "Rejected", "defer": "Deferred"}
    message = f"{words.get(body['verdict'], 'Recorded')}: your decision is recorded."
    return await _act(action, review_id, "approvals", "POST", f"/v1/reviews/{review_id}/approvals", body, message)


@router.post("/reviews/{review_id}/documents")
async def add_document(review_id: uuid.UUID, action: Acting) -> Response:
    kept = {key: action.text(key) for key in ("kind", "title", "summary", "org_unit", "distribution", "certified_by")}
    kept["publish"] = "on" if action.text("publish") else ""
    body: dict[str, Any] = {
        "kind": kept["kind"],
        "title": kept["title"],
        "summary": kept["summary"],
        "distribution": [
            {"name": name.strip()} for name in kept["distribution"].replace(",", "\n").splitlines() if name.strip()
        ],
        "publish": bool(kept["publish"]),
    }
    for optional in ("org_unit", "certified_by"):
        if kept[optional]:
            body[optional] = kept[optional]
    message = "Document published." if body["publish"] else "Document added as a draft."
    path = f"/v1/reviews/{review_id}/documents"
    return await _act(action, review_id, "documents", "POST", path, body, message, document=kept)
