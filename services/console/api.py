"""The console's way to smits: the public `/v1` API, called in-process as the signed-in person.

Every read and every write of a page goes through the same routes, rights, need-to-know rules, CSRF check and
audit as any other client's: the console forwards the browser's session cookie and, on writes, the CSRF token
the page's form carried. It never reads another service's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request

from services.core.auth import CSRF_HEADER, PASSIVE_HEADER, SESSION_COOKIE, passive
from services.core.http import request_id

Params = Mapping[str, str | int | bool | None]


@dataclass(frozen=True, kw_only=True)
class FieldError:
    field: str
    message: str


@dataclass(kw_only=True)
class ApiProblem(Exception):
    """An RFC 9457 problem the API answered with; `detail` is what the person reads."""

    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def by_field(self) -> dict[str, str]:
        """Validation messages keyed by the API's field path (`risk.likelihood`), for inline errors."""
        found: dict[str, str] = {}
        for error in self.errors:
            found.setdefault(error.field, error.message)
        return found


class SignInNeeded(Exception):
    """The browser has no live session: the page sends the person to the sign-in form."""


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """The signed-in person, as `/v1/me` describes them."""

    id: str | None
    """The principal's id (none for an unauthenticated local demo caller)."""
    name: str
    email: str | None
    roles: frozenset[str]
    scopes: frozenset[str]
    csrf_token: str | None

    def may(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _client(app: FastAPI) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(app.state, "console_api", None)
    if client is None:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://smits.internal", timeout=30.0
        )
        app.state.console_api = client
    return client


def problem_of(response: httpx.Response) -> ApiProblem:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    errors = [
        FieldError(field=str(item.get("field", "")), message=str(item.get("message", "")))
        for item in body.get("errors", [])
        if isinstance(item, dict)
    ]
    title = str(body.get("title") or response.reason_phrase or "Error")
    detail = str(body.get("detail") or title)
    if not errors and isinstance(body.get("field"), str):  # a problem about one field (e.g. `Invalid`)
        errors = [FieldError(field=body["field"], message=detail)]
    return ApiProblem(status=response.status_code, title=title, detail=detail, errors=errors)


def _refreshing(request: Request) -> bool:
    """An htmx GET: the console uses htmx only for pages refreshing themselves (the board), never for a
    person's action."""
    return request.method == "GET" and request.headers.get("hx-request") == "true"


class Api:
    """The API as the person behind `request`."""

    def __init__(self, request: Request, *, csrf_token: str | None = None) -> None:
        self._client = _client(request.app)
        self._headers: dict[str, str] = {"accept": "application/json"}
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            self._headers["cookie"] = f"{SESSION_COOKIE}={cookie}"
        authorization = request.headers.get("authorization")
        if authorization:  # a script reading a page with an API key or access token (no cookie: no CSRF)
            self._headers["authorization"] = authorization
        this_request = request_id(request)
        if this_request:
            self._headers["x-request-id"] = this_request
        if csrf_token:
            self._headers[CSRF_HEADER] = csrf_token
        if passive(request) or _refreshing(request):  # a page refreshing itself: not the person's activity
            self._headers[PASSIVE_HEADER] = "1"

    async def get(self, path: str, params: Params | None = None) -> Any:
        query = {key: value for key, value in (params or {}).items() if value is not None and value != ""}
        response = await self._client.get(path, params=query, headers=self._headers)
        return self._answer(response)

    async def send(self, method: str, path: str, body: object | None = None) -> Any:
        headers = dict(self._headers)
        content = None
        if body is not None:
            headers["content-type"] = "application/json"
            content = orjson.dumps(body)
        response = await self._client.request(method, path, content=content, headers=headers)
        return self._answer(response)

    async def raw(self, method: str, path: str, body: object | None = None) -> httpx.Response:
        """The response as it came (for the console's sign-out, which passes on the cookie's removal)."""
        headers = dict(self._headers)
        if body is not None:
            headers["content-type"] = "application/json"
        return await self._client.request(
            method, path, content=orjson.dumps(body) if body is not None else None, headers=headers
        )

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.status_code == 401:
            raise SignInNeeded
        if response.status_code >= 400:
            raise problem_of(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def viewer(self) -> Viewer:
        me = await self.get("/v1/me")
        return Viewer(
            id=str(me["id"]) if me.get("id") else None,
            name=str(me.get("name") or me.get("email") or "you"),
            email=me.get("email"),
            roles=frozenset(me.get("roles", [])),
            scopes=frozenset(me.get("scopes", [])),
            csrf_token=me.get("csrf_token"),
        )
