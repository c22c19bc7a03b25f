"""Signing in through the configured OpenID Connect provider: `GET /auth/oidc/login` (to the provider, with
PKCE) and `GET /auth/oidc/callback` (back: a browser session for the person, provisioned just in time), and
bearer JWT access tokens on the API. Successes and failures of sign-in are audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.auth import unauthorized
from services.core.db import UnitOfWork
from services.core.errors import Conflict
from services.core.http import ProblemError, request_id
from services.core.identity import audit, store
from services.core.identity.model import AuthMethod, Caller
from services.core.identity.oidc import InvalidToken, OidcIdentity, OidcProvider, PendingLogin, ProviderUnavailable
from services.core.identity.routes import LANDING, safe_next, start_session
from services.core.observability import get_logger
from services.core.settings import Settings

log = get_logger(__name__)
PENDING_MAX_AGE_S = 600.0
"""A sign-in must come back from the provider within ten minutes."""


def _unavailable(exc: ProviderUnavailable) -> ProblemError:
    log.warning("OpenID Connect provider unavailable", error=str(exc))
    return ProblemError(503, "Service Unavailable", "the sign-in provider cannot be reached; try again shortly")


async def _person(session: AsyncSession, identity: OidcIdentity, now: datetime) -> store.PrincipalRow:
    if not identity.email:
        raise InvalidToken("the provider gave no verified e-mail address for this person")
    try:
        return await store.provision(
            session,
            issuer=identity.issuer,
            subject=identity.subject,
            email=identity.email,
            name=identity.name,
            roles=identity.roles,
            now=now,
        )
    except Conflict as exc:
        raise InvalidToken(exc.detail) from None


class BearerTokens:
    """`services.core.auth.BearerVerifier` for the provider's access tokens."""

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider

    async def caller(self, session: AsyncSession, token: str, now: datetime) -> Caller:
        try:
            identity = await self.provider.verify_bearer(token)
            row = await _person(session, identity, now)
        except InvalidToken as exc:
            raise unauthorized(f"access token refused: {exc}") from None
        except ProviderUnavailable as exc:
            raise _unavailable(exc) from None
        if row.disabled_at is not None:
            raise unauthorized("this person is disabled")
        return await store.caller_of(session, row, method=AuthMethod.BEARER_JWT)


def build_router(*, settings: Settings, uow: UnitOfWork, provider: OidcProvider) -> APIRouter:
    router = APIRouter(tags=["sign-in"])
    redirect_uri = settings.public_url.rstrip("/") + "/auth/oidc/callback"

    @router.get("/auth/oidc/login")
    async def oidc_login(next: Annotated[str, Query(max_length=1000)] = LANDING) -> RedirectResponse:
        """To the provider's sign-in page (authorization code flow with PKCE); it comes back to the callback."""
        try:
            url, pending = await provider.login_url(redirect_uri=redirect_uri, return_to=safe_next(next))
        except ProviderUnavailable as exc:
            raise _unavailable(exc) from None
        async with uow.begin() as session:
            await store.remember_login(
                session,
                state=pending.state,
                nonce=pending.nonce,
                code_verifier=pending.code_verifier,
                redirect_uri=pending.redirect_uri,
                return_to=pending.return_to,
                now=datetime.now(UTC),
            )
        return RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})

    @router.get("/auth/oidc/callback")
    async def oidc_callback(request: Request) -> RedirectResponse:
        """The provider's answer: the code is redeemed, the ID token checked, and a session started."""
        params = {key: value[:4096] for key, value in list(request.query_params.items())[:20]}
        now = datetime.now(UTC)
        this_request = request_id(request)
        async with uow.begin() as session:
            row = await store.take_login(session, params.get("state", "")[:100], now=now, max_age_s=PENDING_MAX_AGE_S)
        try:
            if row is None:
                raise InvalidToken("this sign-in is unknown, was already used or took longer than ten minutes")
            pending = PendingLogin(
                state=row.state,
                nonce=row.nonce,
                code_verifier=row.code_verifier,
                redirect_uri=row.redirect_uri,
                return_to=row.return_to,
            )
            identity = await provider.complete(pending=pending, params=params)
            async with uow.begin() as session:
                person = await _person(session, identity, now)
                if person.disabled_at is not None:
                    raise InvalidToken("this person is disabled")
                token, _ = await store.open_session(
                    session,
                    principal_id=person.id,
                    method="oidc",
                    now=now,
                    expires_at=now + timedelta(seconds=settings.session_absolute_s),
                )
                await audit.record(
                    session,
                    principal=person.email or identity.subject,
                    method="oidc",
                    action="auth.login",
                    target=f"principal:{person.email}",
                    now=now,
                    request_id=this_request,
                    detail={"issuer": identity.issuer, "roles": ",".join(sorted(identity.roles))},
                )
        except InvalidToken as exc:
            async with uow.begin() as session:
                await audit.record(
                    session,
                    principal=f"oidc:{settings.oidc_issuer}",
                    method="oidc",
                    action="auth.login",
                    target="principal:unknown",
                    outcome="refused",
                    now=now,
                    request_id=this_request,
                    detail={"reason": str(exc)},
                )
            raise ProblemError(401, "Unauthorized", f"sign-in refused: {exc}") from None
        except ProviderUnavailable as exc:
            raise _unavailable(exc) from None
        response = RedirectResponse(safe_next(pending.return_to), status_code=303)
        start_session(response, settings, token)
        return response

    return router
