"""Principals, roles and scopes, and the caller of one request or command. Pure: no I/O.

Invariant: a caller's effective scopes are its credential's scopes intersected with what its roles grant (a key
owned by a person never does more than that person may); a service-account key (no owner) has its own scopes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    TRIGGERS_WRITE = "triggers:write"
    REVIEWS_READ = "reviews:read"
    REVIEWS_WRITE = "reviews:write"
    SUBSCRIPTIONS_ADMIN = "subscriptions:admin"
    ADMIN = "admin"


class Role(StrEnum):
    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    STRATEGY_MANAGER = "strategy_manager"
    APPROVER = "approver"
    ADMIN = "admin"


class PrincipalKind(StrEnum):
    PERSON = "person"
    SERVICE = "service"


class AuthMethod(StrEnum):
    SESSION = "session"
    BEARER_JWT = "bearer_jwt"
    API_KEY = "api_key"
    CLI = "cli"
    AUTH_DISABLED = "auth_disabled"
    SIGNED_LINK = "signed_link"
    """A signed, expiring, single-use link from an e-mail: it acknowledges one document version, nothing else."""


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.VIEWER: frozenset({Scope.REVIEWS_READ}),
    Role.CONTRIBUTOR: frozenset({Scope.REVIEWS_READ, Scope.REVIEWS_WRITE}),
    Role.STRATEGY_MANAGER: frozenset({Scope.REVIEWS_READ, Scope.REVIEWS_WRITE}),
    Role.APPROVER: frozenset({Scope.REVIEWS_READ, Scope.REVIEWS_WRITE}),
    Role.ADMIN: frozenset(Scope),
}
"""What each role may do at the coarse (scope) level; finer rules (who may approve, transition, acknowledge)
are checked by the flows against the caller."""


def granted(roles: Iterable[Role]) -> frozenset[Scope]:
    """The scopes a set of roles grants together."""
    return frozenset(scope for role in roles for scope in ROLE_SCOPES[role])


def effective_scopes(credential: Iterable[Scope] | None, roles: Iterable[Role] | None) -> frozenset[Scope]:
    """What a caller may do: a person's credential (key or session) never exceeds their roles; `admin` on a
    credential stands for every scope. `credential=None` (a session, a bearer JWT) means "all the roles grant";
    `roles=None` (a service account) means "all the credential says"."""
    wanted = frozenset(Scope) if credential is None or Scope.ADMIN in credential else frozenset(credential)
    return wanted if roles is None else wanted & granted(roles)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^[^@\s<>(),;:\"\[\]]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"
"""An address people sign in with: a local part without spaces or mail syntax, and a dotted DNS domain."""


def normal_email(email: str) -> str:
    """E-mail addresses compare case-insensitively (the domain always, the local part in practice)."""
    return email.strip().lower()


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who is acting, as proven by `method`. `principal_id` is None only for a service-account key and for the
    disabled-auth demo. `grants` are the need-to-know tokens that clear them (see `clearance_tokens`)."""

    principal_id: uuid.UUID | None
    kind: PrincipalKind
    name: str
    email: str | None
    roles: frozenset[Role]
    org_units: frozenset[str] = frozenset()
    scopes: frozenset[Scope]
    method: AuthMethod
    key_id: uuid.UUID | None = None
    grants: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        """How the caller appears as an actor (timeline, approvals, audit): the e-mail for a person, else
        `service:<name>`."""
        return self.email if self.email else f"service:{self.name}"

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes

    def has(self, role: Role) -> bool:
        return role in self.roles


def clearance_tokens(
    *, email: str | None, roles: Iterable[Role], units: Iterable[str], cleared: bool
) -> frozenset[str]:
    """The tokens a restricted review's clearance list is matched against: `principal:<email>`, `role:<role>`,
    `unit:<name>` for every unit the person belongs to or sits under, and `*` for someone cleared for all
    restricted data."""
    tokens = {f"role:{role.value}" for role in roles} | {f"unit:{unit}" for unit in units}
    if email:
        tokens.add(f"principal:{normal_email(email)}")
    if cleared:
        tokens.add("*")
    return frozenset(tokens)


def disabled_auth_caller(host: str) -> Caller:
    """The caller when authentication is disabled (the local demo only): every role, named after the client."""
    return Caller(
        principal_id=None,
        kind=PrincipalKind.SERVICE,
        name=f"anonymous@{host}",
        email=None,
        roles=frozenset(Role),
        scopes=frozenset(Scope),
        method=AuthMethod.AUTH_DISABLED,
        grants=frozenset({"*"}),
    )
