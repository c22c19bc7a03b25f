"""The console's one table: the board views people save (a name and the board's query string)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.core.db import Base, UTCDateTime, new_id

MAX_VIEWS = 50
"""Saved views per person."""


class SavedViewRow(Base):
    __tablename__ = "console_saved_views"
    __table_args__ = (UniqueConstraint("principal", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def views_of(session: AsyncSession, principal: str) -> list[SavedViewRow]:
    rows = await session.scalars(
        select(SavedViewRow).where(SavedViewRow.principal == principal).order_by(SavedViewRow.name)
    )
    return list(rows)


async def save_view(session: AsyncSession, *, principal: str, name: str, query: str, now: datetime) -> bool:
    """Saves (or replaces) `name`; False when the person already has `MAX_VIEWS` other views."""
    existing = await session.scalar(
        select(SavedViewRow).where(SavedViewRow.principal == principal, SavedViewRow.name == name)
    )
    if existing is not None:
        existing.query = query
        return True
    if len(await views_of(session, principal)) >= MAX_VIEWS:
        return False
    session.add(SavedViewRow(principal=principal, name=name, query=query, created_at=now))
    return True


async def delete_view(session: AsyncSession, *, principal: str, name: str) -> bool:
    """Whether the principal had a view of that name (now deleted)."""
    result = await session.execute(
        delete(SavedViewRow).where(SavedViewRow.principal == principal, SavedViewRow.name == name)
    )
    return bool(getattr(result, "rowcount", 0))
