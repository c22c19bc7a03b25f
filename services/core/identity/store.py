"""Identity tables and every query on them: principals, org units (a tree), memberships, API keys, browser
sessions and pending OpenID Connect sign-ins. Functions take the caller's session and never commit."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint, delete, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.db import Base, UTCDateTime, new_id
from services.core.errors import Conflict, Invalid, NotFound
from services.core.identity.model import (
    AuthMethod,
    Caller,
    PrincipalKind,
    Role,
    Scope,
    clearance_tokens,
    effective_scopes,
    normal_email,
)

KEY_PREFIX = "smits_"
MAX_UNIT_DEPTH = 32
"""Org units nest at most this deep (a cycle or a runaway chain is refused)."""


class PrincipalRow(Base):
    __tablename__ = "core_principals"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    manager_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("core_principals.id"))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(500))
    cleared_restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrgUnitRow(Base):
    __tablename__ = "core_org_units"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("core_org_units.id"))
    lead_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("core_principals.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MembershipRow(Base):
    __tablename__ = "core_memberships"

    principal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("core_principals.id"), primary_key=True)
    org_unit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("core_org_units.id"), primary_key=True)


class ApiKeyRow(Base):
    __tablename__ = "core_api_keys"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("core_principals.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SessionRow(Base):
    """A browser session: only the SHA-256 of the cookie's token is stored."""

    __tablename__ = "core_sessions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("core_principals.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PendingLoginRow(Base):
    """An OpenID Connect sign-in between the redirect to the provider and its callback."""

    __tablename__ = "core_pending_logins"

    state: Mapped[str] = mapped_column(String(100), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    return_to: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- principals -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Person:
    """A principal as listed to admins and returned by `/v1/me`."""

    id: uuid.UUID
    kind: PrincipalKind
    email: str | None
    name: str
    roles: list[Role]
    org_units: list[str]
    manager: str | None
    cleared_restricted: bool
    disabled: bool


async def principal_by_email(session: AsyncSession, email: str) -> PrincipalRow | None:
    return (await session.scalars(select(PrincipalRow).where(PrincipalRow.email == normal_email(email)))).first()


async def principal_by_id(session: AsyncSession, principal_id: uuid.UUID) -> PrincipalRow | None:
    return await session.get(PrincipalRow, principal_id)


async def require_person(session: AsyncSession, email: str) -> PrincipalRow:
    row = await principal_by_email(session, email)
    if row is None:
        raise NotFound(f"no person with e-mail {normal_email(email)!r}")
    return row


async def unit_by_name(session: AsyncSession, name: str) -> OrgUnitRow:
    row = (await session.scalars(select(OrgUnitRow).where(OrgUnitRow.name == name))).first()
    if row is None:
        raise NotFound(f"no org unit {name!r}")
    return row


async def create_person(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    roles: Iterable[Role],
    org_units: Sequence[str] = (),
    manager: str | None = None,
    password_hash: str | None = None,
    oidc: tuple[str, str] | None = None,
    now: datetime,
) -> PrincipalRow:
    """A new person; `Conflict` if the e-mail is taken, `NotFound` for an unknown unit or manager."""
    if await principal_by_email(session, email) is not None:
        raise Conflict(f"a person with e-mail {normal_email(email)!r} already exists")
    manager_row = await require_person(session, manager) if manager else None
    row = PrincipalRow(
        id=new_id(),
        kind=PrincipalKind.PERSON.value,
        email=normal_email(email),
        name=name,
        roles=sorted({Role(r).value for r in roles}),
        manager_id=manager_row.id if manager_row else None,
        password_hash=password_hash,
        oidc_issuer=oidc[0] if oidc else None,
        oidc_subject=oidc[1] if oidc else None,
        cleared_restricted=False,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    for unit_name in dict.fromkeys(org_units):
        unit = await unit_by_name(session, unit_name)
        session.add(MembershipRow(principal_id=row.id, org_unit_id=unit.id))
    await session.flush()
    return row


async def set_roles(session: AsyncSession, row: PrincipalRow, roles: Iterable[Role]) -> None:
    row.roles = sorted({Role(r).value for r in roles})
    await session.flush()


async def set_clearance(session: AsyncSession, row: PrincipalRow, cleared: bool) -> None:
    """Clear the principal for all restricted (need-to-know) data, or withdraw it; takes effect at its next
    request, since every request reads the caller's grants afresh."""
    row.cleared_restricted = cleared
    await session.flush()


def _person(row: PrincipalRow, *, units: Iterable[str], manager: str | None) -> Person:
    return Person(
        id=row.id,
        kind=PrincipalKind(row.kind),
        email=row.email,
        name=row.name,
        roles=[Role(r) for r in row.roles],
        org_units=sorted(units),
        manager=manager,
        cleared_restricted=row.cleared_restricted,
        disabled=row.disabled_at is not None,
    )


async def person_of(session: AsyncSession, row: PrincipalRow) -> Person:
    manager = await session.get(PrincipalRow, row.manager_id) if row.manager_id else None
    return _person(row, units=await units_of(session, row.id), manager=manager.email if manager else None)


async def list_people(session: AsyncSession, *, limit: int = 1000) -> list[Person]:
    """People by e-mail, with their units and managers (three queries, however many people)."""
    rows = (await session.scalars(select(PrincipalRow).order_by(PrincipalRow.email).limit(limit))).all()
    memberships = await session.execute(
        select(MembershipRow.principal_id, OrgUnitRow.name)
        .join(OrgUnitRow, OrgUnitRow.id == MembershipRow.org_unit_id)
        .where(MembershipRow.principal_id.in_([row.id for row in rows]))
    )
    units: dict[uuid.UUID, set[str]] = {}
    for principal_id, unit in memberships.all():
        units.setdefault(principal_id, set()).add(unit)
    manager_ids = {row.manager_id for row in rows if row.manager_id}
    found = await session.execute(select(PrincipalRow.id, PrincipalRow.email).where(PrincipalRow.id.in_(manager_ids)))
    managers = {principal_id: email for principal_id, email in found.all()}
    return [
        _person(row, units=units.get(row.id, ()), manager=managers.get(row.manager_id) if row.manager_id else None)
        for row in rows
    ]


async def units_of(session: AsyncSession, principal_id: uuid.UUID) -> set[str]:
    """The names of the units `principal_id` belongs to directly."""
    rows = await session.scalars(
        select(OrgUnitRow.name)
        .join(MembershipRow, MembershipRow.org_unit_id == OrgUnitRow.id)
        .where(MembershipRow.principal_id == principal_id)
    )
    return set(rows.all())


async def with_ancestors(session: AsyncSession, unit_names: Iterable[str]) -> set[str]:
    """`unit_names` and every unit above them (a member of a unit is under all its parents)."""
    units = {row.id: row for row in (await session.scalars(select(OrgUnitRow))).all()}
    by_name = {row.name: row for row in units.values()}
    found: set[str] = set()
    for name in unit_names:
        row = by_name.get(name)
        for _ in range(MAX_UNIT_DEPTH):
            if row is None or row.name in found:
                break
            found.add(row.name)
            row = units.get(row.parent_id) if row.parent_id else None
    return found


async def belongs_under(session: AsyncSession, units: Iterable[str], unit: str) -> bool:
    """Whether one of `units` is `unit` or sits under it: a member of such a unit belongs to `unit`."""
    return unit in await with_ancestors(session, units)


async def caller_of(
    session: AsyncSession,
    row: PrincipalRow,
    *,
    method: AuthMethod,
    credential: Iterable[Scope] | None = None,
    key_id: uuid.UUID | None = None,
) -> Caller:
    """The caller a person (or service principal) is when proven by `method`."""
    roles = frozenset(Role(r) for r in row.roles)
    direct = await units_of(session, row.id)
    above = await with_ancestors(session, direct)
    return Caller(
        principal_id=row.id,
        kind=PrincipalKind(row.kind),
        name=row.name,
        email=row.email,
        roles=roles,
        org_units=frozenset(direct),
        scopes=effective_scopes(credential, roles),
        method=method,
        key_id=key_id,
        grants=clearance_tokens(email=row.email, roles=roles, units=above, cleared=row.cleared_restricted),
    )


# --- org units ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrgUnit:
    id: uuid.UUID
    name: str
    parent: str | None
    lead: str | None


async def create_unit(
    session: AsyncSession, *, name: str, parent: str | None, lead: str | None, now: datetime
) -> OrgUnitRow:
    if (await session.scalars(select(OrgUnitRow.id).where(OrgUnitRow.name == name))).first() is not None:
        raise Conflict(f"org unit {name!r} already exists")
    parent_row = await unit_by_name(session, parent) if parent else None
    if parent_row is not None and len(await with_ancestors(session, [parent_row.name])) >= MAX_UNIT_DEPTH:
        raise Invalid(f"org units nest at most {MAX_UNIT_DEPTH} deep", field="parent")
    lead_row = await require_person(session, lead) if lead else None
    row = OrgUnitRow(
        id=new_id(),
        name=name,
        parent_id=parent_row.id if parent_row else None,
        lead_id=lead_row.id if lead_row else None,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def list_units(session: AsyncSession) -> list[OrgUnit]:
    rows = (await session.scalars(select(OrgUnitRow).order_by(OrgUnitRow.name))).all()
    names = {row.id: row.name for row in rows}
    lead_ids = [row.lead_id for row in rows if row.lead_id]
    found = await session.execute(select(PrincipalRow.id, PrincipalRow.email).where(PrincipalRow.id.in_(lead_ids)))
    leads = {principal_id: email for principal_id, email in found.all()}
    return [
        OrgUnit(
            id=row.id,
            name=row.name,
            parent=names.get(row.parent_id) if row.parent_id else None,
            lead=leads.get(row.lead_id) if row.lead_id else None,
        )
        for row in rows
    ]


async def add_member(session: AsyncSession, *, email: str, unit: str) -> None:
    person = await require_person(session, email)
    unit_row = await unit_by_name(session, unit)
    if await session.get(MembershipRow, (person.id, unit_row.id)) is None:
        session.add(MembershipRow(principal_id=person.id, org_unit_id=unit_row.id))
        await session.flush()


async def members_of(session: AsyncSession, unit: str, *, below: bool = True, enabled_only: bool = False) -> list[str]:
    """E-mail addresses of the people in `unit` (and, with `below`, in every unit under it; with
    `enabled_only`, not those disabled)."""
    rows = (await session.scalars(select(OrgUnitRow))).all()
    children: dict[uuid.UUID | None, list[OrgUnitRow]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)
    start = next((row for row in rows if row.name == unit), None)
    if start is None:
        raise NotFound(f"no org unit {unit!r}")
    ids, frontier = {start.id}, [start]
    while below and frontier:
        frontier = [child for row in frontier for child in children.get(row.id, []) if child.id not in ids]
        ids.update(child.id for child in frontier)
    emails = await session.scalars(
        select(PrincipalRow.email)
        .join(MembershipRow, MembershipRow.principal_id == PrincipalRow.id)
        .where(
            MembershipRow.org_unit_id.in_(ids),
            PrincipalRow.email.is_not(None),
            PrincipalRow.disabled_at.is_(None) if enabled_only else true(),
        )
        .distinct()
    )
    return sorted(email for email in emails.all() if email)


async def holders_of(session: AsyncSession, role: Role) -> list[str]:
    """E-mail addresses of the enabled people holding `role`."""
    rows = await session.execute(
        select(PrincipalRow.email, PrincipalRow.roles).where(
            PrincipalRow.kind == PrincipalKind.PERSON.value,
            PrincipalRow.email.is_not(None),
            PrincipalRow.disabled_at.is_(None),
        )
    )
    return sorted(email for email, roles in rows.all() if email and role.value in (roles or []))


async def disabled_among(session: AsyncSession, emails: Iterable[str]) -> set[str]:
    """Those of `emails` (normalised) that belong to a disabled principal."""
    wanted = sorted({normal_email(email) for email in emails})
    if not wanted:
        return set()
    rows = await session.scalars(
        select(PrincipalRow.email).where(PrincipalRow.email.in_(wanted), PrincipalRow.disabled_at.is_not(None))
    )
    return {email for email in rows.all() if email}


# --- API keys -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    id: uuid.UUID
    name: str
    scopes: list[str]
    owner: str | None
    created_at: datetime
    revoked_at: datetime | None


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[Scope],
    owner: str | None = None,
    now: datetime,
) -> tuple[uuid.UUID, str]:
    """Store a new key's hash; returns its id and the key itself (the only time it exists in clear). A key
    with an owner acts as that person (never beyond their roles); without one, it is a service account."""
    owner_row = await require_person(session, owner) if owner else None
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        hash=digest(key),
        id=new_id(),
        name=name,
        scopes=sorted({Scope(s).value for s in scopes}),
        owner_id=owner_row.id if owner_row else None,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row.id, key


async def key_by_token(session: AsyncSession, token: str) -> ApiKeyRow | None:
    row = await session.get(ApiKeyRow, digest(token))
    return row if row is not None and row.revoked_at is None else None


async def list_keys(session: AsyncSession) -> list[KeyInfo]:
    rows = await session.execute(
        select(ApiKeyRow, PrincipalRow.email)
        .outerjoin(PrincipalRow, PrincipalRow.id == ApiKeyRow.owner_id)
        .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    )
    return [
        KeyInfo(
            id=row.id,
            name=row.name,
            scopes=list(row.scopes),
            owner=email,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row, email in rows
    ]


async def revoke_key(session: AsyncSession, key_id: uuid.UUID, *, now: datetime) -> KeyInfo:
    """Revoke a key (idempotent); `NotFound` for an unknown id."""
    row = (await session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == key_id))).first()
    if row is None:
        raise NotFound(f"no API key {key_id}")
    if row.revoked_at is None:
        row.revoked_at = now
    owner = await session.get(PrincipalRow, row.owner_id) if row.owner_id else None
    return KeyInfo(
        id=row.id,
        name=row.name,
        scopes=list(row.scopes),
        owner=owner.email if owner else None,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


async def caller_of_key(session: AsyncSession, row: ApiKeyRow) -> Caller | None:
    """The caller a key stands for; None if its owner is disabled."""
    scopes = [Scope(s) for s in row.scopes]
    if row.owner_id is None:
        return Caller(
            principal_id=None,
            kind=PrincipalKind.SERVICE,
            name=row.name,
            email=None,
            roles=frozenset(),
            scopes=effective_scopes(scopes, None),
            method=AuthMethod.API_KEY,
            key_id=row.id,
        )
    owner = await session.get(PrincipalRow, row.owner_id)
    if owner is None or owner.disabled_at is not None:
        return None
    return await caller_of(session, owner, method=AuthMethod.API_KEY, credential=scopes, key_id=row.id)


# --- browser sessions -------------------------------------------------------------------------------------


async def open_session(
    session: AsyncSession, *, principal_id: uuid.UUID, method: str, now: datetime, expires_at: datetime
) -> tuple[str, str]:
    """A new browser session; returns the cookie token and the CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        SessionRow(
            hash=digest(token),
            principal_id=principal_id,
            csrf_token=csrf,
            method=method,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return token, csrf


async def live_session(
    session: AsyncSession, token: str, *, now: datetime, idle_s: float, touch: bool = True
) -> SessionRow | None:
    """The session a cookie names, if neither its absolute nor its idle expiry has passed (an expired one is
    deleted); its last-seen time moves to `now` unless `touch` is false (a page refreshing itself is not the
    person's activity)."""
    row = await session.get(SessionRow, digest(token))
    if row is None:
        return None
    if row.expires_at <= now or (now - row.last_seen_at).total_seconds() > idle_s:
        await session.delete(row)
        return None
    if touch and (now - row.last_seen_at).total_seconds() > 60:  # one write a minute per session at most
        row.last_seen_at = now
    return row


async def close_session(session: AsyncSession, token: str) -> uuid.UUID | None:
    row = await session.get(SessionRow, digest(token))
    if row is None:
        return None
    await session.delete(row)
    return row.principal_id


async def close_sessions_of(session: AsyncSession, principal_id: uuid.UUID) -> None:
    await session.execute(delete(SessionRow).where(SessionRow.principal_id == principal_id))


async def disable(session: AsyncSession, row: PrincipalRow, *, now: datetime) -> None:
    row.disabled_at = now
    await close_sessions_of(session, row.id)
    await session.execute(
        update(ApiKeyRow).where(ApiKeyRow.owner_id == row.id, ApiKeyRow.revoked_at.is_(None)).values(revoked_at=now)
    )


# --- OpenID Connect ---------------------------------------------------------------------------------------


async def provision(
    session: AsyncSession,
    *,
    issuer: str,
    subject: str,
    email: str,
    name: str | None,
    roles: Iterable[str],
    now: datetime,
) -> PrincipalRow:
    """The person an OpenID Connect identity is, created just in time. Found by (issuer, subject); else an
    existing person with the same (provider-verified) e-mail and no provider binding yet is bound to it. The
    provider is the source of roles: they are replaced by the token's at every sign-in."""
    held = {Role(role) for role in roles}
    granted = sorted(role.value for role in held)
    row = (
        await session.scalars(
            select(PrincipalRow).where(PrincipalRow.oidc_issuer == issuer, PrincipalRow.oidc_subject == subject)
        )
    ).first()
    if row is None:
        row = await principal_by_email(session, email)
        if row is not None and row.oidc_subject is not None:
            raise Conflict(f"{normal_email(email)!r} is already bound to another sign-in at a provider")
        if row is not None:
            row.oidc_issuer, row.oidc_subject = issuer, subject
    if row is None:
        return await create_person(
            session, email=email, name=name or email, roles=held, oidc=(issuer, subject), now=now
        )
    if row.roles != granted:
        row.roles = granted
    await session.flush()
    return row


async def remember_login(
    session: AsyncSession,
    *,
    state: str,
    nonce: str,
    code_verifier: str,
    redirect_uri: str,
    return_to: str,
    now: datetime,
) -> None:
    session.add(
        PendingLoginRow(
            state=state,
            nonce=nonce,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            return_to=return_to,
            created_at=now,
        )
    )
    await session.flush()


async def take_login(session: AsyncSession, state: str, *, now: datetime, max_age_s: float) -> PendingLoginRow | None:
    """The pending sign-in `state` names, removed (a state is used once); None if unknown or too old. Sign-ins
    abandoned longer ago than `max_age_s` are removed on the way."""
    await session.execute(
        delete(PendingLoginRow).where(PendingLoginRow.created_at < now - timedelta(seconds=max_age_s))
    )
    row = await session.get(PendingLoginRow, state)
    if row is not None:
        await session.delete(row)
    return row
