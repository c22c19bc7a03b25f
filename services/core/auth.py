"""Who is calling: the HTTP edge of identity. Every route that needs a caller declares one of the `Annotated`
dependencies below and receives the `Caller`; flows get the caller from the route, never from a request body.

A caller proves who they are by one of:
- `Authorization: Bearer smits_...`: an API key (only its SHA-256 is stored); a key with an owner acts as that
  person, within their roles; one without is a service account.
- `Authorization: Bearer <JWT>`: an access token of the configured OpenID Connect issuer (`SMITS_OIDC_*`).
- the `smits_session` cookie of a browser session; a write (any method but GET/HEAD/OPTIONS) also needs the
  session's CSRF token in the `X-CSRF-Token` header, so another site cannot write with the cookie.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import UnitOfWork
from services.core.http import ProblemError
from services.core.identity import store
from services.core.identity.model import AuthMethod, Caller, Scope, disabled_auth_caller
from services.core.identity.store import KEY_PREFIX, ApiKeyRow

__all__ = ["KEY_PREFIX", "ApiKeyRow", "Caller", "Scope", "create_key", "requires"]

SESSION_COOKIE = "smits_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BearerVerifier(Protocol):
    """Turns a bearer JWT into a caller (the OpenID Connect provider plus just-in-time provisioning)."""

    async def caller(self, session: AsyncSession, token: str, now: datetime) -> Caller: ...


async def create_key(session: AsyncSession, *, name: str, scopes: Sequence[Scope], owner: str | None = None) -> str:
    """A new API key in clear (shown once); see `store.create_key`."""
    _, key = await store.create_key(session, name=name, scopes=scopes, owner=owner, now=datetime.now(UTC))
    return key


PASSIVE_HEADER = "x-smits-passive"
"""Sent (value `1`) by a page refreshing itself: the request does not count as the person's activity, so an open
board never keeps an idle session alive."""


def passive(request: Request) -> bool:
    return request.headers.get(PASSIVE_HEADER) == "1"


def unauthorized(detail: str) -> ProblemError:
    error = ProblemError(401, "Unauthorized", detail)
    error.headers["WWW-Authenticate"] = 'Bearer realm="smits"'
    return error


async def identify(request: Request) -> Caller:
    """The caller of `request` (401 problem+json if none is proven); cached on the request."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    runtime = request.app.state.runtime
    if runtime.settings.auth_disabled:
        caller = disabled_auth_caller(request.client.host if request.client else "unknown")
    else:
        caller = await _prove(request, runtime.uow, runtime.bearer, runtime.settings.session_idle_s)
    request.state.caller = caller
    return caller


async def _prove(request: Request, uow: UnitOfWork, bearer: BearerVerifier | None, idle_s: float) -> Caller:
    now = datetime.now(UTC)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme:
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <API key or access token>'")
        async with uow.begin() as session:
            if token.startswith(KEY_PREFIX):
                row = await store.key_by_token(session, token)
                caller = await store.caller_of_key(session, row) if row is not None else None
                if caller is None:
                    raise unauthorized("unknown or revoked API key")
                return caller
            if bearer is None:
                raise unauthorized("not an API key, and no OpenID Connect issuer is configured for access tokens")
            return await bearer.caller(session, token, now)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise unauthorized("sign in, or send 'Authorization: Bearer <API key or access token>'")
    async with uow.begin() as session:
        live = await store.live_session(session, cookie, now=now, idle_s=idle_s, touch=not passive(request))
        person = await session.get(store.PrincipalRow, live.principal_id) if live is not None else None
        if live is None or person is None or person.disabled_at is not None:
            raise unauthorized("the session has ended; sign in again")
        if request.method not in SAFE_METHODS:
            offered = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(offered.encode(), live.csrf_token.encode()):
                raise ProblemError(
                    403, "Forbidden", f"a signed-in write needs the session's CSRF token in the {CSRF_HEADER} header"
                )
        return await store.caller_of(session, person, method=AuthMethod.SESSION)


def requires(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    """A route dependency: the caller, who must hold `scope` (an API key's scope intersected with its owner's
    roles; a person's roles otherwise)."""

    async def guard(request: Request) -> Caller:
        caller = await identify(request)
        if not caller.may(scope):
            raise ProblemError(
                403,
                "Forbidden",
                f"{caller.label} may not do this: it needs the '{scope.value}' scope, which "
                + ("this key lacks" if caller.method is AuthMethod.API_KEY else "the caller's roles do not grant"),
                required_scope=scope.value,
            )
        return caller

    return guard


SignedIn = Annotated[Caller, Depends(identify)]
ReviewsRead = Annotated[Caller, Depends(requires(Scope.REVIEWS_READ))]
ReviewsWrite = Annotated[Caller, Depends(requires(Scope.REVIEWS_WRITE))]
TriggersWrite = Annotated[Caller, Depends(requires(Scope.TRIGGERS_WRITE))]
SubscriptionsAdmin = Annotated[Caller, Depends(requires(Scope.SUBSCRIPTIONS_ADMIN))]
Admin = Annotated[Caller, Depends(requires(Scope.ADMIN))]
