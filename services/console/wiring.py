"""The console's composition: its pages, sign-out and static files, at `/` beside the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.console.api import Api
from services.console.pages import (
    admin,
    board,
    dead_letters,
    documents,
    kpis,
    policies,
    review,
    subscriptions,
    triggers,
    work,
)
from services.console.web import Acting, ConsoleRoute, static_file
from services.core.runtime import Runtime, ServiceUnit

STATIC_CACHE = "public, max-age=3600"


def build(runtime: Runtime) -> ServiceUnit:
    router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
    for pages in (work.router, board.router, review.router, documents.router):
        router.include_router(pages)
    for pages in (triggers.router, dead_letters.router, policies.router, kpis.router):
        router.include_router(pages)
    for pages in (subscriptions.router, admin.router):
        router.include_router(pages)

    @router.get("/static/{name}")
    async def static(name: str, request: Request) -> Response:
        found = static_file(name)
        if found is None:
            return Response(status_code=404)
        content, media_type = found
        return Response(content, media_type=media_type, headers={"cache-control": STATIC_CACHE})

    @router.post("/sign-out")
    async def sign_out(action: Acting) -> Response:
        answer = await Api(action.request, csrf_token=action.viewer.csrf_token).raw("POST", "/auth/logout")
        response = RedirectResponse("/auth/login", status_code=303)
        for value in answer.headers.get_list("set-cookie"):
            response.headers.append("set-cookie", value)
        return response

    return ServiceUnit(name="console", router=router)
