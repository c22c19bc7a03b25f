"""The audit log's hash chain on real Postgres: intact when appended, broken (naming the first record that does
not fit) after any edit, deletion or reordering; concurrent appends still form one chain."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update

from services.core.db import UnitOfWork
from services.core.identity import audit
from services.core.identity.audit import AuditCheckpointRow, AuditRow
from tests.support.processes import SMITS

START = datetime(2026, 11, 1, tzinfo=UTC)


async def _append(uow: UnitOfWork, count: int) -> None:
    async with uow.begin() as session:
        for n in range(count):
            await audit.record(
                session,
                principal=f"p{n % 7}@corp.example",
                method="api_key",
                action="review.transition",
                target=f"review:{n}",
                now=START + timedelta(seconds=n),
                before={"state": "plan"},
                after={"state": "do", "n": n},
                detail={"n": n},
            )


async def _verify(uow: UnitOfWork) -> tuple[int, audit.Broken | None]:
    async with uow.begin() as session:
        return await audit.verify(session)


async def test_an_untouched_chain_verifies_with_its_checkpoints(uow: UnitOfWork) -> None:
    await _append(uow, 250)
    count, broken = await _verify(uow)
    async with uow.begin() as session:
        anchored = (await session.scalars(select(AuditCheckpointRow.seq).order_by(AuditCheckpointRow.seq))).all()
    assert (count, broken) == (250, None)
    assert anchored == [100, 200]


async def _edit(uow: UnitOfWork, seq: int) -> None:
    async with uow.begin() as session:
        await session.execute(update(AuditRow).where(AuditRow.seq == seq).values(principal="someone-else@corp.example"))


async def _edit_and_rehash(uow: UnitOfWork, seq: int) -> None:
    """A careful forger: edits a record and recomputes its own hash (the next record no longer follows)."""
    async with uow.begin() as session:
        row = (await session.scalars(select(AuditRow).where(AuditRow.seq == seq))).one()
        row.action = "review.update"
        row.hash = audit.chain_hash(row)


async def _delete(uow: UnitOfWork, seq: int) -> None:
    async with uow.begin() as session:
        await session.execute(delete(AuditRow).where(AuditRow.seq == seq))


async def _reorder(uow: UnitOfWork, seq: int) -> None:
    """Swap two neighbours' places in the sequence."""
    async with uow.begin() as session:
        await session.execute(update(AuditRow).where(AuditRow.seq == seq).values(seq=-1))
        await session.execute(update(AuditRow).where(AuditRow.seq == seq + 1).values(seq=seq))
        await session.execute(update(AuditRow).where(AuditRow.seq == -1).values(seq=seq + 1))


@pytest.mark.parametrize(
    ("tamper", "first_broken"),
    [(_edit, 57), (_edit_and_rehash, 58), (_delete, 57), (_reorder, 57)],
    ids=["edit", "edit-and-rehash", "delete", "reorder"],
)
async def test_tampering_breaks_the_chain_at_the_first_record_that_no_longer_fits(
    uow: UnitOfWork, tamper: Any, first_broken: int
) -> None:
    await _append(uow, 120)
    await tamper(uow, 57)
    count, broken = await _verify(uow)
    assert broken is not None
    assert broken.seq == first_broken
    assert count == first_broken - 1


async def test_deleting_the_newest_records_is_caught_by_the_head(uow: UnitOfWork) -> None:
    await _append(uow, 30)
    async with uow.begin() as session:
        await session.execute(delete(AuditRow).where(AuditRow.seq > 27))
    count, broken = await _verify(uow)
    assert broken is not None
    assert broken.seq == 28
    assert count == 27


async def test_rewriting_a_checkpointed_stretch_is_caught_by_the_checkpoint(uow: UnitOfWork) -> None:
    """A forger who rewrites records 1..100 and rehashes the whole chain from there still differs from the
    checkpoint anchored at 100."""
    await _append(uow, 100)
    async with uow.begin() as session:
        previous = audit.GENESIS
        for row in (await session.scalars(select(AuditRow).order_by(AuditRow.seq))).all():
            row.principal = "forger@corp.example"
            row.prev_hash = previous
            row.hash = audit.chain_hash(row)
            previous = row.hash
        await session.execute(text("UPDATE core_audit_head SET hash = :h"), {"h": previous})
    _, broken = await _verify(uow)
    assert broken is not None
    assert broken.seq == 100
    assert "checkpoint" in broken.reason


async def test_concurrent_appends_form_one_chain(uow: UnitOfWork) -> None:
    async def writer(n: int) -> None:
        for i in range(10):
            async with uow.begin() as session:
                await audit.record(
                    session, principal=f"w{n}", method="api_key", action="x", target=f"{n}:{i}", now=START
                )

    await asyncio.gather(*(writer(n) for n in range(8)))
    assert await _verify(uow) == (80, None)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    detail=st.dictionaries(
        st.text(max_size=30), st.one_of(st.text(max_size=800), st.integers(), st.none()), max_size=25
    ),
    principal=st.text(max_size=600),
)
async def test_any_detail_and_principal_are_stored_bounded_and_still_verify(
    uow: UnitOfWork, detail: dict[str, Any], principal: str
) -> None:
    async with uow.begin() as session:
        await audit.record(
            session, principal=principal, method="cli", action="x", target=principal, now=START, detail=detail
        )
        _, broken = await audit.verify(session)
    assert broken is None


def test_smits_audit_verify_exits_non_zero_naming_the_broken_record(database_url: str) -> None:
    env = {"SMITS_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    subprocess.run([SMITS, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    for name in ("one", "two", "three"):
        subprocess.run([SMITS, "org-units", "create", "--name", name], env=env, check=True, capture_output=True)
    intact = subprocess.run([SMITS, "audit", "verify"], env=env, capture_output=True, text=True, check=False)
    exported = subprocess.run(
        [SMITS, "audit", "export", "--since", "2000-01-01T00:00:00Z", "--format", "jsonl"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    asyncio.run(_tamper_second(database_url))
    broken = subprocess.run([SMITS, "audit", "verify"], env=env, capture_output=True, text=True, check=False)
    assert intact.returncode == 0, intact.stderr
    assert "3 records" in intact.stdout
    assert exported.returncode == 0
    assert len(exported.stdout.splitlines()) == 3
    assert '"principal":"cli:' in exported.stdout
    assert broken.returncode == 1
    assert "record 2" in broken.stdout


async def _tamper_second(database_url: str) -> None:
    from services.core.db import create_engine

    engine = create_engine(database_url)
    try:
        await _edit(UnitOfWork(engine), 2)
    finally:
        await engine.dispose()
