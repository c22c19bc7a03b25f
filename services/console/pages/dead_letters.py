"""Dead letters, for admins: the records ingest refused, with the reason in words, and a replay per record."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from services.console import words
from services.console.api import ApiProblem
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
MAX_ID = 2**63 - 1
Text = Annotated[str, Query(max_length=500)]


async def dead_letters_page(
    page: Page, *, reason: str = "", cursor: str = "", status: int = 200, problem: ApiProblem | None = None
) -> HTMLResponse:
    result = await page.api.get("/v1/dead-letters", {"reason": reason, "cursor": cursor, "limit": PAGE_SIZE})
    items: list[dict[str, Any]] = result["items"]
    for item in items:
        item["reason_words"] = words.reason(item["reason"])
    return page.render(
        "dead_letters.html",
        status=status,
        items=items,
        reason=reason,
        problem=problem,
        next_page=_query(reason=reason, cursor=result["next_cursor"]) if result["next_cursor"] else None,
    )


def _query(**values: str) -> str:
    return urlencode({key: value for key, value in values.items() if value})


@router.get("/dead-letters")
async def dead_letters(page: Viewing, reason: Text = "", cursor: Text = "") -> HTMLResponse:
    return await dead_letters_page(page, reason=reason, cursor=cursor)


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay(dead_letter_id: Annotated[int, Path(ge=1, le=MAX_ID)], action: Acting) -> Response:
    try:
        replayed = await action.api.send("POST", f"/v1/dead-letters/{dead_letter_id}/replay")
    except ApiProblem as problem:
        if problem.status >= 500 or problem.status in (401, 403, 404):
            raise
        return await dead_letters_page(action, status=problem.status, problem=problem)
    message = (
        f"Replayed dead letter {dead_letter_id} to {replayed['topic']} (partition {replayed['partition']}, "
        f"offset {replayed['offset']}): ingest reads it again now."
    )
    if replayed.get("truncated"):
        message += f" Its dead letter had been cut to fit ({replayed['truncated']})."
    return done("/dead-letters", message)
