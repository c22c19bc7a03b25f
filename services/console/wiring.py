"""The console's composition: its pages, sign-out and static files, at `/` beside the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.routing import Match

from services.console.api import Api, ApiProblem
from services.console.pages import (
    admin,
    board,
    dead_letters,
    documents,
    kpis,
    mail,
    policies,
    preferences,
    review,
    subscriptions,
    triggers,
    work,
)
from services.console.web import Acting, ConsoleRoute, render, static_file
from services.core.http import problem_response
from services.core.runtime import Runtime, ServiceUnit

STATIC_CACHE = "public, max-age=3600"


def build(runtime: Runtime) -> ServiceUnit:
    router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
    for pages in (work.router, preferences.router, board.router, review.router, documents.router):
        router.include_router(pages)
    for pages in (triggers.router, dead_letters.router, policies.router, kpis.router):
        router.include_router(pages)
    for pages in (subscriptions.router, mail.router, admin.router):
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

    @router.get("/{path:path}", response_model=None)
    async def nowhere(path: str, request: Request) -> Response:
        """Last of all routes: an address with no page. A browser gets a page in words (a form's address opened
        again, an old link); an API client the problem it always got."""
        form_address = _other_methods(request)
        accept = request.headers.get("accept", "")
        if path.startswith(("v1/", "auth/")) or ("json" in accept and "text/html" not in accept):
            if form_address:
                return problem_response(405, "Method Not Allowed", instance=request.url.path)
            return problem_response(404, "Not Found", instance=request.url.path)
        parent = "/" + path.strip("/").rsplit("/", 1)[0] if "/" in path.strip("/") else "/"
        detail = (
            "This address is where a form is sent, so it cannot be opened as a page; nothing was sent now."
            if form_address
            else "There is no page at this address; the link may be old or mistyped."
        )
        problem = ApiProblem(status=404, title="No page here", detail=detail)
        return render(request, "error.html", viewer=None, status=404, problem=problem, back=parent)

    return ServiceUnit(name="console", router=router)


def _other_methods(request: Request) -> bool:
    """Some route serves this path with another method (a form's POST address opened with GET)."""
    return any(route.matches(request.scope)[0] is Match.PARTIAL for route in request.app.router.routes)
