"""The review rights of `rights.py` checked against a loaded review (the org-unit tree is read for `edit`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.identity import store
from services.core.identity.model import Caller, Role
from services.strategy_engine import rights
from services.strategy_engine.persistence import ReviewRow


def require_steer(caller: Caller, review: ReviewRow) -> None:
    rights.steer(caller, review=str(review.id), owner=review.owner)


async def require_edit(session: AsyncSession, caller: Caller, review: ReviewRow) -> None:
    in_unit = (
        review.scope is not None
        and caller.has(Role.CONTRIBUTOR)
        and bool(caller.org_units)
        and await store.belongs_under(session, caller.org_units, review.scope)
    )
    rights.edit(caller, review=str(review.id), owner=review.owner, unit=review.scope, in_unit=in_unit)
