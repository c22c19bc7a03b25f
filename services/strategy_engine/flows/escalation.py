"""Who an escalation level reaches, resolved when it fires from the identity tables: the owner's manager, the lead
of the review's org unit (its scope), or people named in the policy. Nobody to reach is said in words."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import NotFound
from services.core.identity import store
from services.strategy_engine.persistence import ReviewRow
from services.strategy_engine.reminders import EscalationStep, TargetKind


@dataclass(frozen=True, kw_only=True)
class Target:
    """One person a level reaches (`email`), or why there is none (`unresolved`)."""

    email: str | None
    unresolved: str | None = None


def _nobody(why: str) -> Target:
    return Target(email=None, unresolved=why)


async def targets(session: AsyncSession, review: ReviewRow, step: EscalationStep) -> list[Target]:
    """The people `step` escalates `review` to (one `Target` each; a named level may reach several)."""
    if step.target is TargetKind.MANAGER:
        return [await _manager(session, review.owner)]
    if step.target is TargetKind.ORG_UNIT_LEAD:
        return [await _lead(session, review.scope)]
    return [await _named(session, email) for email in step.named]


async def _active(session: AsyncSession, principal: store.PrincipalRow | None, role: str) -> Target:
    if principal is None or principal.email is None:
        return _nobody(f"{role} is not a person with an e-mail address")
    if principal.disabled_at is not None:
        return _nobody(f"{role} {principal.email} is disabled")
    return Target(email=principal.email)


async def _manager(session: AsyncSession, owner: str | None) -> Target:
    if not owner:
        return _nobody("the review has no owner")
    person = await store.principal_by_email(session, owner)
    if person is None:
        return _nobody(f"the owner {owner} is not a known person")
    if person.manager_id is None:
        return _nobody(f"the owner {person.email} has no manager")
    return await _active(session, await store.principal_by_id(session, person.manager_id), "the owner's manager")


async def _lead(session: AsyncSession, unit_name: str | None) -> Target:
    if not unit_name:
        return _nobody("the review has no org unit")
    try:
        unit = await store.unit_by_name(session, unit_name)
    except NotFound:
        return _nobody(f"there is no org unit {unit_name!r} (the review's scope)")
    if unit.lead_id is None:
        return _nobody(f"the org unit {unit_name!r} has no lead")
    return await _active(session, await store.principal_by_id(session, unit.lead_id), f"the lead of {unit_name!r}")


async def _named(session: AsyncSession, email: str) -> Target:
    person = await store.principal_by_email(session, email)
    if person is None:
        return _nobody(f"no person with e-mail {email}")
    return await _active(session, person, "the named person")
