"""A document: its versions, who holds the current copy, and the viewer's own answer (acknowledge, decline, ask
for an exception with a reason)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


async def document_page(
    page: Page, document_id: uuid.UUID, *, status: int = 200, problem: ApiProblem | None = None
) -> HTMLResponse:
    document = await page.api.get(f"/v1/documents/{document_id}")
    mine = {
        version["version"]: own
        for version in document["versions"]
        if version["status"] == "published"
        for own in version["recipients"]
        if own["recipient"] == page.viewer.email and not own["acknowledged_at"]
    }
    return page.render("document.html", status=status, document=document, problem=problem, to_acknowledge=mine)


@router.get("/documents/{document_id}")
async def show(document_id: uuid.UUID, page: Viewing) -> HTMLResponse:
    return await document_page(page, document_id)


@router.post("/documents/{document_id}/acknowledge")
async def acknowledge(document_id: uuid.UUID, action: Acting) -> Response:
    version = action.text("version")
    body = {"version": version} if version else {}
    try:
        await action.api.send("POST", f"/v1/documents/{document_id}/acknowledgements", body)
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status in (401, 404):
            raise
        return await document_page(action, document_id, status=problem.status, problem=problem)
    return done(f"/documents/{document_id}", f"Acknowledged version {version}: you hold the current copy.")


ANSWERS = {"decline": "Declined", "exception": "Asked for an exception to"}


@router.post("/documents/{document_id}/answer")
async def answer(document_id: uuid.UUID, action: Acting) -> Response:
    """Decline the version, or ask to be excused from it, with a reason."""
    version, decision = action.text("version"), action.text("decision")
    body: dict[str, object] = {"decision": decision, "reason": action.form.get("reason", "")}
    if version:
        body["version"] = version
    try:
        await action.api.send("POST", f"/v1/documents/{document_id}/acknowledgements", body)
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status in (401, 404):
            raise
        return await document_page(action, document_id, status=problem.status, problem=problem)
    said = ANSWERS.get(decision, "Answered")
    return done(f"/documents/{document_id}", f"{said} version {version}; the document's owner sees your reason.")
