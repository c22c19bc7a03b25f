"""Sign-in and the people API: `/auth/login`, `/auth/logout`, `/v1/me`, and for admins `/v1/users`,
`/v1/org-units`, `/v1/keys`. Every write appends an audit record in its own transaction; so does a failed
sign-in. The OpenID Connect routes are added by `oidc_routes` when an issuer is configured."""

from __future__ import annotations

import html
import ipaddress
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from services.core.auth import CSRF_HEADER, SESSION_COOKIE, Admin, SignedIn, passive
from services.core.db import UnitOfWork
from services.core.errors import Forbidden, Invalid
from services.core.http import Instant, ProblemError, request_id, row_id
from services.core.identity import audit, passwords, store
from services.core.identity.model import EMAIL_PATTERN, AuthMethod, Caller, Role, Scope, normal_email
from services.core.limits import CallerTokenBuckets
from services.core.settings import Settings

Name = Annotated[str, Field(min_length=1, max_length=200)]
EmailStr = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN), AfterValidator(normal_email)]
LANDING = "/"
"""Where a sign-in lands when no (safe) `next` is given: the console's My work."""
LOGIN_FAILED = "the e-mail address or the password is wrong"


class LoginIn(BaseModel):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=passwords.MAX_LENGTH)]
    next: Annotated[str, Field(max_length=1000)] = LANDING


class MeOut(BaseModel):
    id: uuid.UUID | None
    kind: str
    name: str
    email: str | None
    roles: list[Role]
    org_units: list[str]
    scopes: list[Scope]
    auth_method: AuthMethod
    key_id: uuid.UUID | None
    csrf_token: str | None = Field(default=None, description=f"send it as {CSRF_HEADER} on every signed-in write")


class PersonIn(BaseModel):
    model_config = {"extra": "forbid"}

    email: EmailStr
    name: Name
    roles: Annotated[list[Role], Field(min_length=1, max_length=10)]
    org_units: Annotated[list[Name], Field(max_length=50)] = []
    manager: EmailStr | None = None
    password: Annotated[str, Field(max_length=passwords.MAX_LENGTH)] | None = None


class PersonOut(BaseModel):
    id: uuid.UUID
    kind: str
    email: str | None
    name: str
    roles: list[Role]
    org_units: list[str]
    manager: str | None
    cleared_restricted: bool
    disabled: bool


class ClearanceIn(BaseModel):
    model_config = {"extra": "forbid"}

    cleared_restricted: bool = Field(description="cleared for all restricted (need-to-know) data")


class OrgUnitIn(BaseModel):
    model_config = {"extra": "forbid"}

    name: Name
    parent: Name | None = None
    lead: EmailStr | None = None


class OrgUnitOut(BaseModel):
    id: uuid.UUID
    name: str
    parent: str | None
    lead: str | None


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    owner: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyIn(BaseModel):
    model_config = {"extra": "forbid"}

    name: Annotated[Name, Field(description="who or what the key is for")]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))]
    owner: EmailStr | None = Field(
        default=None,
        description="the person the key acts as (never beyond their roles); none: a service account with `scopes`",
    )


class KeyCreatedOut(KeyOut):
    key: str = Field(description="the key itself: in this answer only (smits keeps its hash)")


SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · smits</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}
button{{margin-top:1rem;padding:.5rem 1.2rem;font-size:1rem}}.error{{color:#a00;font-weight:600}}</style></head>
<body><main><h1>Sign in to smits</h1>{error}
<form method="post" action="/auth/login"><input type="hidden" name="next" value="{next}">
<label for="email">E-mail address</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>{oidc}</main></body></html>"""


def cookie_secure(settings: Settings) -> bool:
    """Session cookies are `Secure` unless smits is reached over plain HTTP on loopback (the local demo)."""
    url = urlsplit(settings.public_url)
    if url.scheme == "https":
        return True
    host = url.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def safe_next(target: str) -> str:
    """Where to go after sign-in: a path on this site only (never `//evil.example` or a full URL)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return LANDING
    return target


def cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF: signing the victim in as the attacker). Browsers say so in
    `Sec-Fetch-Site`; older ones at least send `Origin` on a cross-origin post."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")


async def _login_input(request: Request) -> LoginIn:
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            return LoginIn.model_validate_json(body)
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        return LoginIn.model_validate(form)
    except (ValidationError, ValueError) as exc:
        raise ProblemError(
            422, "Request validation failed", "send form fields (or JSON members) email and password"
        ) from exc


def start_session(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_absolute_s),
        httponly=True,
        secure=cookie_secure(settings),
        samesite="lax",
        path="/",
    )


def build_router(*, settings: Settings, uow: UnitOfWork) -> APIRouter:
    router = APIRouter(tags=["identity"])
    per_account = CallerTokenBuckets(rate=5 / 60, burst=10)  # failed sign-ins per e-mail address and client
    per_client = CallerTokenBuckets(rate=1.0, burst=30)  # sign-in attempts per client address

    def throttled(request: Request, email: str) -> str:
        """429 when this client tries too often; returns the bucket its failures for `email` count in: per
        address *and* client, so nobody can lock a person out by failing in their name."""
        client = request.client.host if request.client else "unknown"
        failures = f"{email}|{client}"
        wait = max(per_client.take(client), per_account.wait(failures))
        if wait > 0:
            error = ProblemError(429, "Too Many Requests", "too many sign-in attempts; wait and try again")
            error.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise error
        return failures

    @router.get("/auth/login", response_class=HTMLResponse, tags=["sign-in"])
    async def sign_in_page(
        next: Annotated[str, Query(max_length=1000)] = LANDING, failed: Annotated[bool, Query()] = False
    ) -> HTMLResponse:
        """The sign-in form (local accounts, and the OpenID Connect button when an issuer is configured)."""
        target = safe_next(next)
        error = '<p class="error" role="alert">The e-mail address or the password is wrong.</p>' if failed else ""
        oidc = (
            f'<p><a href="/auth/oidc/login?next={quote(target)}">Sign in with your organisation</a></p>'
            if settings.oidc_issuer
            else ""
        )
        page = SIGN_IN_PAGE.format(error=error, next=html.escape(target, quote=True), oidc=oidc)
        return HTMLResponse(page, headers={"cache-control": "no-store", "x-frame-options": "DENY"})

    @router.post("/auth/login", response_model=None, tags=["sign-in"])
    async def login(request: Request) -> Response:
        """Local accounts: form (or JSON) `email`, `password`, optional `next`. A form post is redirected (303)
        to `next`; a JSON post gets the caller and the CSRF token. Failures are 401 and audited."""
        if not _is_json(request) and cross_site(request):
            raise Forbidden("sign in on this site's own form; a form from another site cannot sign anyone in")
        body = await _login_input(request)
        email = normal_email(body.email)
        failures = throttled(request, email)
        now = datetime.now(UTC)
        this_request = request_id(request)
        async with uow.begin() as session:
            row = await store.principal_by_email(session, email)
            ok = passwords.verify(row.password_hash if row else None, body.password)
            if row is None or not ok or row.disabled_at is not None:
                per_account.take(failures)
                await audit.record(
                    session,
                    principal=email,
                    method="password",
                    action="auth.login",
                    target=f"principal:{email}",
                    outcome="refused",
                    now=now,
                    request_id=this_request,
                    detail={"reason": "disabled" if row is not None and ok else "wrong e-mail or password"},
                )
        if row is None or not ok or row.disabled_at is not None:
            if not _is_json(request):  # a browser's form: back to the form, saying what went wrong
                return RedirectResponse(f"/auth/login?failed=true&next={quote(safe_next(body.next))}", 303)
            raise ProblemError(401, "Unauthorized", LOGIN_FAILED)
        async with uow.begin() as session:
            token, csrf = await store.open_session(
                session,
                principal_id=row.id,
                method="password",
                now=now,
                expires_at=now + timedelta(seconds=settings.session_absolute_s),
            )
            await audit.record(
                session,
                principal=email,
                method="password",
                action="auth.login",
                target=f"principal:{email}",
                now=now,
                request_id=this_request,
            )
            caller = await store.caller_of(session, row, method=AuthMethod.SESSION)
        response: Response
        if _is_json(request):
            response = JSONResponse(json.loads(me_out(caller, csrf).model_dump_json()))
        else:
            response = RedirectResponse(safe_next(body.next), status_code=303)
        start_session(response, settings, token)
        return response

    @router.post("/auth/logout", status_code=204, tags=["sign-in"])
    async def logout(request: Request, caller: SignedIn) -> Response:
        """End the browser session (a signed-in write: it needs the CSRF token)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        async with uow.begin() as session:
            if cookie and caller.method is AuthMethod.SESSION:
                await store.close_session(session, cookie)
            await audit.record_by(
                session,
                caller,
                action="auth.logout",
                target=f"principal:{caller.label}",
                now=datetime.now(UTC),
                request_id=request_id(request),
            )
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=cookie_secure(settings), samesite="lax")
        return response

    @router.get("/v1/me", response_model=MeOut, tags=["people"])
    async def me(request: Request, caller: SignedIn) -> MeOut:
        """The caller: principal, roles, org units, effective scopes, and how they signed in."""
        csrf = None
        cookie = request.cookies.get(SESSION_COOKIE)
        if caller.method is AuthMethod.SESSION and cookie:
            async with uow.begin() as session:
                live = await store.live_session(
                    session, cookie, now=datetime.now(UTC), idle_s=settings.session_idle_s, touch=not passive(request)
                )
                csrf = live.csrf_token if live else None
        return me_out(caller, csrf)

    @router.get("/v1/users", response_model=list[PersonOut], tags=["people"])
    async def list_users(_caller: Admin) -> list[PersonOut]:
        async with uow.begin() as session:
            return [
                PersonOut.model_validate(person, from_attributes=True) for person in await store.list_people(session)
            ]

    @router.post("/v1/users", status_code=201, response_model=PersonOut, tags=["people"])
    async def create_user(request: Request, body: PersonIn, caller: Admin) -> PersonOut:
        """A person; `password` (optional) makes a local account, else they sign in through OpenID Connect."""
        now = datetime.now(UTC)
        try:
            hashed = passwords.hash_password(body.password) if body.password is not None else None
        except ValueError as exc:
            raise Invalid(str(exc), field="password") from None
        async with uow.begin() as session:
            row = await store.create_person(
                session,
                email=str(body.email),
                name=body.name,
                roles=body.roles,
                org_units=body.org_units,
                manager=str(body.manager) if body.manager else None,
                password_hash=hashed,
                now=now,
            )
            person = await store.person_of(session, row)
            out = PersonOut.model_validate(person, from_attributes=True)
            await audit.record_by(
                session,
                caller,
                action="user.create",
                target=f"principal:{row.email}",
                now=now,
                request_id=request_id(request),
                after=out.model_dump(mode="json"),
                detail={"roles": ",".join(out.roles), "org_units": ",".join(out.org_units)},
            )
        return out

    @router.post("/v1/users/{email}/clearance", response_model=PersonOut, tags=["people"])
    async def set_clearance(request: Request, email: str, body: ClearanceIn, caller: Admin) -> PersonOut:
        """Clear a person for all restricted (need-to-know) reviews, or withdraw it; audited, effective at once."""
        now = datetime.now(UTC)
        async with uow.begin() as session:
            row = await store.require_person(session, email)
            before = row.cleared_restricted
            await store.set_clearance(session, row, body.cleared_restricted)
            out = PersonOut.model_validate(await store.person_of(session, row), from_attributes=True)
            await audit.record_by(
                session,
                caller,
                action="user.clearance",
                target=f"principal:{row.email}",
                now=now,
                request_id=request_id(request),
                before={"cleared_restricted": before},
                after={"cleared_restricted": out.cleared_restricted},
                detail={"cleared_restricted": out.cleared_restricted},
            )
        return out

    @router.post("/v1/users/{email}/disable", response_model=PersonOut, tags=["people"])
    async def disable_user(request: Request, email: str, caller: Admin) -> PersonOut:
        """Someone who left: their sessions end and their keys are revoked at once, and they can no longer sign
        in (locally or through OpenID Connect). Their past actions stay theirs in the audit log."""
        now = datetime.now(UTC)
        async with uow.begin() as session:
            row = await store.require_person(session, email)
            if row.email == caller.email:
                raise Invalid("an admin cannot disable themself (ask another admin)", field="email")
            if row.disabled_at is None:
                await store.disable(session, row, now=now)
                await audit.record_by(
                    session,
                    caller,
                    action="user.disable",
                    target=f"principal:{row.email}",
                    now=now,
                    request_id=request_id(request),
                    before={"disabled": False},
                    after={"disabled": True},
                )
            return PersonOut.model_validate(await store.person_of(session, row), from_attributes=True)

    @router.get("/v1/org-units", response_model=list[OrgUnitOut], tags=["people"])
    async def list_org_units(_caller: Admin) -> list[OrgUnitOut]:
        async with uow.begin() as session:
            return [OrgUnitOut.model_validate(unit, from_attributes=True) for unit in await store.list_units(session)]

    @router.post("/v1/org-units", status_code=201, response_model=OrgUnitOut, tags=["people"])
    async def create_org_unit(request: Request, body: OrgUnitIn, caller: Admin) -> OrgUnitOut:
        now = datetime.now(UTC)
        async with uow.begin() as session:
            row = await store.create_unit(
                session, name=body.name, parent=body.parent, lead=str(body.lead) if body.lead else None, now=now
            )
            out = OrgUnitOut(id=row.id, name=row.name, parent=body.parent, lead=str(body.lead) if body.lead else None)
            await audit.record_by(
                session,
                caller,
                action="org_unit.create",
                target=f"org_unit:{row.name}",
                now=now,
                request_id=request_id(request),
                after=out.model_dump(mode="json"),
            )
        return out

    @router.get("/v1/keys", response_model=list[KeyOut], tags=["people"])
    async def list_keys(_caller: Admin) -> list[KeyOut]:
        """Every API key (never the key itself): name, scopes, owner, when created and revoked."""
        async with uow.begin() as session:
            return [KeyOut.model_validate(key, from_attributes=True) for key in await store.list_keys(session)]

    @router.post("/v1/keys", status_code=201, response_model=KeyCreatedOut, tags=["people"])
    async def create_key(request: Request, body: KeyIn, caller: Admin) -> KeyCreatedOut:
        """A new API key, answered in clear this once: copy it now, only its hash is kept. With an `owner` it
        acts as that person, within their roles; without one it is a service account holding `scopes`."""
        now = datetime.now(UTC)
        async with uow.begin() as session:
            if body.owner is not None:
                owner = await store.principal_by_email(session, body.owner)
                if owner is None:
                    raise Invalid(f"no person with e-mail {body.owner!r}", field="owner")
                if owner.disabled_at is not None:
                    raise Invalid(f"{owner.email} is disabled: a key of theirs would not work", field="owner")
            key_id, key = await store.create_key(session, name=body.name, scopes=body.scopes, owner=body.owner, now=now)
            out = KeyOut(
                id=key_id,
                name=body.name,
                scopes=sorted({scope.value for scope in body.scopes}),
                owner=body.owner,
                created_at=now,
                revoked_at=None,
            )
            await audit.record_by(  # never the key, not even its digest
                session,
                caller,
                action="key.create",
                target=f"key:{key_id}",
                now=now,
                request_id=request_id(request),
                after=out.model_dump(mode="json"),
                detail={"name": out.name, "scopes": ",".join(out.scopes), "owner": out.owner or "service account"},
            )
        return KeyCreatedOut(**out.model_dump(), key=key)

    @router.delete("/v1/keys/{key_id}", response_model=KeyOut, tags=["people"])
    async def revoke_key(request: Request, key_id: uuid.UUID, caller: Admin) -> KeyOut:
        """Revoke a key at once; repeating it changes nothing."""
        now = datetime.now(UTC)
        async with uow.begin() as session:
            info = await store.revoke_key(session, key_id, now=now)
            await audit.record_by(
                session,
                caller,
                action="key.revoke",
                target=f"key:{key_id}",
                now=now,
                request_id=request_id(request),
                detail={"name": info.name, "owner": info.owner or "service account"},
            )
        return KeyOut.model_validate(info, from_attributes=True)

    @router.get("/v1/audit", tags=["people"])
    async def audit_log(
        _caller: Admin,
        principal: Annotated[str | None, Query(max_length=400)] = None,
        target: Annotated[str | None, Query(max_length=400)] = None,
        since: Instant | None = None,
        cursor: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9]{1,19}$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        """The audit log, newest first; `next_cursor` continues. Each record carries its chain hashes. For an
        admin not cleared for all restricted data, the `detail` of records about reviews and documents is
        withheld (it may quote a restricted review); who did what to which id stays."""
        try:
            before = row_id(cursor) if cursor else None
        except ValueError:
            raise ProblemError(400, "Bad Request", "cursor is not one this API returned", field="cursor") from None
        async with uow.begin() as session:
            rows = await audit.search(
                session, principal=principal, target=target, since=since, before_seq=before, limit=limit
            )
        cleared = "*" in _caller.grants
        return {
            "records": [_shown(audit.as_record(row), cleared) for row in rows],
            "next_cursor": str(rows[-1].seq) if len(rows) == limit else None,
        }

    return router


ABOUT_REVIEWS = ("review:", "document:")


def _shown(record: dict[str, Any], cleared: bool) -> dict[str, Any]:
    if cleared or not str(record["target"]).startswith(ABOUT_REVIEWS):
        return record
    return {**record, "detail": {"withheld": "need-to-know: ask someone cleared for restricted data"}}


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def me_out(caller: Caller, csrf: str | None) -> MeOut:
    return MeOut(
        id=caller.principal_id,
        kind=caller.kind.value,
        name=caller.name,
        email=caller.email,
        roles=sorted(caller.roles),
        org_units=sorted(caller.org_units),
        scopes=sorted(caller.scopes),
        auth_method=caller.method,
        key_id=caller.key_id,
        csrf_token=csrf,
    )
