"""Set-based writes: on PostgreSQL one statement per table whatever the number of rows, each column sent as one
array (`INSERT ... SELECT FROM unnest(...)`, `UPDATE ... FROM unnest(...)`); on SQLite the same rows through
executemany. Statements are built once per table and columns. Never commits."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Insert, String, Table, TableValuedAlias, Update, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from services.core.db import is_postgres


async def insert_all(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (column values, all with the same columns) in list order: on PostgreSQL one statement
    whatever their number, each column sent as one array."""
    if not rows:
        return
    if not is_postgres(session):
        await session.execute(table.insert(), list(rows))
        return
    names = tuple(rows[0])
    await session.execute(_insert(table, names), {f"a_{name}": [row[name] for row in rows] for name in names})


@functools.cache
def _insert(table: Table, names: tuple[str, ...]) -> Insert:
    """`INSERT INTO table (names) SELECT * FROM unnest(one array per column)`, built once per table and columns."""
    given = unnest(table, names)
    return table.insert().from_select(names, select(*given.c))


def unnest(table: Table, names: Sequence[str]) -> TableValuedAlias:
    arrays = [array(name, table.c[name].type) for name in names]
    return func.unnest(*arrays).table_valued(*names).render_derived()


async def update_by_id(session: AsyncSession, table: Table, columns: dict[str, list[Any]]) -> None:
    """Set the columns of the rows whose `id` is in `columns["id"]`, row by row as the lists go."""
    if not columns["id"]:
        return
    names = tuple(columns)
    if is_postgres(session):
        await session.execute(_update(table, names), {f"a_{name}": values for name, values in columns.items()})
    else:
        rows = [
            dict(zip((f"b_{name}" for name in names), row, strict=True)) for row in zip(*columns.values(), strict=True)
        ]
        await session.execute(_update_each(table, names), rows)


@functools.cache
def _update(table: Table, names: tuple[str, ...]) -> Update:
    """`UPDATE table SET ... FROM unnest(one array per column) WHERE id = ...`, built once per table and columns."""
    given = unnest(table, names)
    return update(table).where(table.c.id == given.c.id).values({name: given.c[name] for name in names[1:]})


@functools.cache
def _update_each(table: Table, names: tuple[str, ...]) -> Update:
    """The same as one UPDATE per row (executemany), for SQLite."""
    return update(table).where(table.c.id == bindparam("b_id")).values({n: bindparam(f"b_{n}") for n in names[1:]})


def array(name: str, type_: TypeEngine[Any]) -> BindParameter[Any]:
    """A PostgreSQL array parameter `a_<name>` of `type_` (strings unbounded, so the column's own length check
    applies on insert instead of a cast cutting them short)."""
    item = String() if isinstance(type_, String) else type_
    return bindparam(f"a_{name}", type_=ARRAY(item))
