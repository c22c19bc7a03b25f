"""What every console page shares: templates, the signed-in viewer, form posts with their CSRF token, flash
messages, errors in words, and the console's own static files (vendored: nothing is loaded from elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException

from services.console.api import Api, ApiProblem, SignInNeeded, Viewer
from services.core.http import request_id
from services.core.observability import get_logger

log = get_logger(__name__)

FLASH_COOKIE = "smits_flash"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def when(value: str | datetime | None) -> Markup:
    """A timestamp as `<time>`: UTC in the page, turned into the viewer's time zone by console.js."""
    if value is None or value == "":
        return Markup('<span class="muted">—</span>')
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    iso = at.isoformat()
    shown = at.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}">{}</time>').format(iso, shown)


def trigger_href(source: str, event_id: str) -> str:
    """The console's page of a trigger, source and id in the query: either may hold any character, a slash
    too (in a path, an id's `%2F` is read as a separator)."""
    return "/triggers/by-id?" + urlencode({"source": source, "id": event_id})


def label(value: object) -> str:
    """`strategy_manager` → `strategy manager`, for people."""
    return str(value).replace("_", " ")


templates = Environment(
    loader=PackageLoader("services.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = when
templates.globals["trigger_href"] = trigger_href
templates.filters["label"] = label


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash = request.cookies.get(FLASH_COOKIE)
    body = templates.get_template(template).render(
        request=request,
        viewer=viewer,
        path=request.url.path,
        flash=unquote(flash)[:500] if flash else None,
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def done(target: str, message: str) -> RedirectResponse:
    """After an action: back to a page (303), which shows `message` once."""
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(message[:300]), max_age=60, httponly=True, samesite="lax", path="/")
    return response


@dataclass(kw_only=True)
class Page:
    """A page being answered: the API as the viewer, and the viewer."""

    request: Request
    api: Api
    viewer: Viewer

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, viewer=self.viewer, status=status, **context)


@dataclass(kw_only=True)
class FormPost(Page):
    """A form post: its fields (the CSRF token checked), and the API with that token for writes."""

    form: Mapping[str, str]
    lists: Mapping[str, list[str]] = field(default_factory=dict)

    def text(self, name: str) -> str:
        return self.form.get(name, "").strip()


async def _page(request: Request) -> Page:
    api = Api(request)
    return Page(request=request, api=api, viewer=await api.viewer())


async def _action(request: Request) -> FormPost:
    form = await request.form(max_files=0, max_fields=400)
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            values.setdefault(key, value)
            lists.setdefault(key, []).append(value)
    viewer = await Api(request).viewer()
    if viewer.csrf_token is not None and values.get("csrf_token") != viewer.csrf_token:
        raise ApiProblem(
            status=403,
            title="Forbidden",
            detail="This form has expired or came from another site. Reload the page and try again.",
        )
    api = Api(request, csrf_token=viewer.csrf_token)
    return FormPost(request=request, api=api, viewer=viewer, form=values, lists=lists)


Viewing = Annotated[Page, Depends(_page)]
Acting = Annotated[FormPost, Depends(_action)]


def _sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or request.headers.get("hx-request") == "true":
        target = request.headers.get("referer", "/").split(str(request.base_url).rstrip("/"), 1)[-1] or "/"
        if not target.startswith("/"):
            target = "/"
    location = f"/auth/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request") == "true":  # a refresh in the page: the whole page goes to sign in
        return Response(status_code=204, headers={"hx-redirect": location})
    return RedirectResponse(location, status_code=303)


def _malformed(invalid: RequestValidationError) -> ApiProblem:
    places = {"path": "the address", "query": "the address's query", "body": "the form"}
    reasons = []
    for error in invalid.errors()[:5]:
        where = places.get(str(error.get("loc", ("",))[0]), "the request")
        field = ".".join(str(part) for part in error.get("loc", ())[1:]) or "it"
        reasons.append(f"{field} in {where}: {error.get('msg', 'not valid')}")
    return ApiProblem(
        status=422,
        title="This address is not valid",
        detail="Nothing was done. " + "; ".join(reasons) + ". Check the link, or start again from My work.",
    )


class ConsoleRoute(APIRoute):
    """A console route: a missing session sends the person to sign in; a problem the API answered becomes a
    page saying it in words (its `detail`), with the API's status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answered(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return _sign_in(request)
            except RequestValidationError as invalid:  # the address or the form itself is malformed
                return render(request, "error.html", viewer=None, status=422, problem=_malformed(invalid))
            except HTTPException as refused:  # e.g. a form with too many fields or a file
                problem = ApiProblem(status=refused.status_code, title="Not accepted", detail=str(refused.detail))
                return render(request, "error.html", viewer=None, status=refused.status_code, problem=problem)
            except ApiProblem as problem:
                if problem.status >= 500:
                    log.error("console page failed", path=request.url.path, problem=str(problem))
                return render(request, "error.html", viewer=None, status=problem.status, problem=problem)
            except Exception:  # a page never answers a browser with a JSON stack of its own failure
                log.exception("console page crashed", path=request.url.path)
                crashed = ApiProblem(
                    status=500,
                    title="Something went wrong",
                    detail="This page failed on our side; the error is logged with request id "
                    f"{request_id(request) or 'unknown'}. Try again, or tell the smits operators.",
                )
                return render(request, "error.html", viewer=None, status=500, problem=crashed)

        return answered


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the console's own files (`services/console/static`), with its media type."""
    kinds = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in kinds:
        return None
    item = resources.files("services.console").joinpath("static", name)
    if not item.is_file():
        return None
    return item.read_bytes(), kinds[suffix]
