"""Who may do what to a review (pure): the rules a flow checks against the caller before it writes.

People act within their roles: the review's owner and strategy managers steer it (transitions, merge, PATCH);
strategy managers, the owner and contributors of the review's org unit (its `scope`, or a unit under it) edit
its assessments and documents; an approver named on the assessment version approves as themself; a recipient
acknowledges as themself, or an admin records it on their behalf with a reason. A service account (a key an
admin issued without an owner) is no person: it steers and edits within its key's scopes, but never approves
or acknowledges. A refusal is `Forbidden`, saying why."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.core.errors import Forbidden, Invalid
from services.core.identity.model import EMAIL_PATTERN, Caller, PrincipalKind, Role, normal_email

_EMAIL = re.compile(EMAIL_PATTERN)


def _is_service(caller: Caller) -> bool:
    return caller.kind is PrincipalKind.SERVICE


def is_owner(caller: Caller, owner: str | None) -> bool:
    return bool(owner and caller.email and normal_email(owner) == caller.email)


def steer(caller: Caller, *, review: str, owner: str | None) -> None:
    """Transitions, merge and PATCH: the owner or a strategy manager."""
    if _is_service(caller) or caller.has(Role.STRATEGY_MANAGER) or is_owner(caller, owner):
        return
    raise Forbidden(
        f"{caller.label} may not change review {review}: only its owner ({owner or 'none assigned'}) "
        "or a strategy manager may"
    )


def edit(caller: Caller, *, review: str, owner: str | None, unit: str | None, in_unit: bool) -> None:
    """Assessments and documents: a strategy manager, the owner, or a contributor who belongs to the review's
    org unit (`in_unit`: one of the caller's units is `unit` or under it)."""
    if _is_service(caller) or caller.has(Role.STRATEGY_MANAGER) or is_owner(caller, owner):
        return
    if caller.has(Role.CONTRIBUTOR) and in_unit:
        return
    owned = f"its owner ({owner or 'none assigned'})"
    takes = (
        f"a strategy manager, {owned} or a contributor of org unit {unit!r} (or a unit under it)"
        if unit
        else f"a strategy manager or {owned}; the review names no org unit"
    )
    raise Forbidden(f"{caller.label} may not edit review {review}'s assessments and documents: that takes {takes}")


def approver(caller: Caller, *, named: Iterable[str], version: int) -> str:
    """The approver a verdict is recorded for: the caller, who must hold the approver role and be named on
    the version."""
    if caller.email is None:
        raise Forbidden(f"{caller.label} is no person: a verdict is given by a named approver, signed in as themself")
    if not caller.has(Role.APPROVER):
        raise Forbidden(f"{caller.email} does not hold the approver role")
    if caller.email not in {normal_email(name) for name in named}:
        raise Forbidden(f"{caller.email} is not an approver named on version {version}")
    return caller.email


def recipient(caller: Caller, *, on_behalf_of: str | None, reason: str | None) -> str:
    """Whose acknowledgement is recorded: the caller's own, or (an admin only, with a reason) someone else's."""
    if on_behalf_of is None:
        if reason is not None:
            raise Invalid("a reason is given only with 'on_behalf_of'", field="reason")
        if caller.email is None:
            raise Forbidden(f"{caller.label} is no person: a recipient acknowledges as themself")
        return caller.email
    if not caller.has(Role.ADMIN) or caller.email is None:
        raise Forbidden(f"{caller.label} may not acknowledge on behalf of someone else: only an admin may")
    if not reason or not reason.strip():
        raise Invalid("acknowledging on behalf of someone else needs a 'reason'", field="reason")
    return normal_email(on_behalf_of)


def people(names: Iterable[str], *, field: str) -> list[str]:
    """People named in a body (approvers, recipients) by e-mail address, normalised; anything else is refused."""
    found: list[str] = []
    for name in names:
        if not _EMAIL.match(name.strip()):
            raise Invalid(f"{name!r} is not an e-mail address: people are named by their e-mail", field=field)
        found.append(normal_email(name))
    return found
