"""The pure pieces of the batch edge: what a transaction still owes, the schedule, the narrowing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import exc as sa_exc

from services.core.batches import Message, Plan, Stuck, backoff_s, by_partition, is_transient, narrow, plan
from services.core.positions import Position

PARKED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(partition: int, offset: int) -> Message:
    return Message(
        topic="t.topic",
        partition=partition,
        offset=offset,
        key=None,
        value=f"{partition}/{offset}".encode(),
        headers=(),
        timestamp_ms=0,
    )


def at(partition: int, next_offset: int, **changes: object) -> Position:
    return Position(group="t.g", topic="t.topic", partition=partition, next_offset=next_offset, **changes)  # type: ignore[arg-type]


def offsets(messages: Sequence[Message]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def test_records_below_the_stored_position_are_dropped_and_the_position_moves_past_the_rest() -> None:
    batch = [record(0, 4), record(1, 0), record(0, 5), record(0, 6), record(1, 1)]
    result = plan(batch, {0: at(0, 6), 1: at(1, 0)})
    assert offsets(result.fresh) == [(1, 0), (0, 6), (1, 1)]  # batch order kept
    assert [(m.partition, m.next_offset) for m in result.moves] == [(0, 7), (1, 2)]
    assert result.held == []
    assert result.skipped == []


def test_a_fully_replayed_batch_applies_nothing_and_moves_nothing() -> None:
    result = plan([record(0, 1), record(0, 2)], {0: at(0, 3)})
    assert result == Plan()


def test_a_parked_partition_is_held_whole_and_does_not_move() -> None:
    parked = at(1, 2, parked_at=PARKED_AT, error="boom")
    result = plan([record(0, 0), record(1, 2), record(1, 3)], {0: at(0, 0), 1: parked})
    assert offsets(result.fresh) == [(0, 0)]
    assert result.held == [parked]
    assert [m.partition for m in result.moves] == [0]


def test_the_skipped_record_goes_to_the_skip_hook_and_the_skip_is_cleared_once_past() -> None:
    result = plan([record(0, 2), record(0, 3)], {0: at(0, 2, skip_offset=2, error="ValueError: bad")})
    assert [(m.offset, reason) for m, reason in result.skipped] == [(2, "ValueError: bad")]
    assert offsets(result.fresh) == [(0, 3)]
    assert result.moves == [at(0, 4, skip_offset=None, error="ValueError: bad")]


def test_a_pending_skip_stays_until_its_record_is_consumed() -> None:
    result = plan([record(0, 1)], {0: at(0, 1, skip_offset=5)})
    assert result.moves[0].skip_offset == 5
    assert offsets(result.fresh) == [(0, 1)]


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, base_s=0.5) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_outages_are_transient_and_bad_records_are_not() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(sa_exc.OperationalError("select", {}, Exception("server closed the connection")))
    assert not is_transient(ValueError("bad record"))
    assert is_transient(sa_exc.DBAPIError("select", {}, _PgError("40P01")))  # deadlock
    assert is_transient(sa_exc.DBAPIError("select", {}, _PgError("57P03")))  # the database is starting up
    assert not is_transient(sa_exc.DBAPIError("select", {}, _PgError("57014")))  # statement timeout
    assert not is_transient(sa_exc.DBAPIError("insert", {}, _PgError("22001")))  # value too long
    assert not is_transient(sa_exc.IntegrityError("insert", {}, Exception("duplicate key")))


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class Poisoned(Exception):
    pass


def run_narrow(batch: list[Message], poison: set[tuple[int, int]]) -> tuple[list[Message], list[Stuck], list[int]]:
    """Narrow with a fake transaction that fails whenever it holds a poisoned record."""
    applied: list[Message] = []
    tries: list[int] = []

    async def apply(part: Sequence[Message], attempts: int) -> BaseException | None:
        tries.append(attempts)
        if any((m.partition, m.offset) in poison for m in part):
            return Poisoned(str(offsets(part)))
        applied.extend(part)
        return None

    stuck = asyncio.run(narrow(batch, apply, record_attempts=3))
    return applied, stuck, tries


def test_narrowing_applies_what_precedes_the_failing_record_and_stops_its_partition_only() -> None:
    batch = [record(p, o) for o in range(4) for p in (0, 1, 2)]
    applied, stuck, tries = run_narrow(batch, {(1, 2)})
    assert sorted(offsets(applied)) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)] + [(2, o) for o in range(4)]
    assert [(s.message.partition, s.message.offset) for s in stuck] == [(1, 2)]
    assert stuck[0].error.startswith("Poisoned: ")
    assert tries == [1, 1, 3, 3, 3, 1]  # slices once each; the failing slice record by record with 3 attempts


def test_a_single_partition_batch_goes_straight_to_records() -> None:
    applied, stuck, tries = run_narrow([record(0, o) for o in range(3)], {(0, 0)})
    assert applied == []
    assert [s.message.offset for s in stuck] == [0]
    assert tries == [3]


batches = st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=30)


@given(records=batches)
def test_narrowing_applies_exactly_each_partitions_prefix_before_its_first_poisoned_record(
    records: list[tuple[int, bool]],
) -> None:
    next_offset: dict[int, int] = {}
    batch, poison = [], set()
    for partition, poisoned in records:
        offset = next_offset.get(partition, 0)
        next_offset[partition] = offset + 1
        batch.append(record(partition, offset))
        if poisoned:
            poison.add((partition, offset))
    applied, stuck, _ = run_narrow(batch, poison)

    first_bad = {p: min(o for q, o in poison if q == p) for p, _ in poison}
    assert sorted(offsets(applied)) == sorted(
        (m.partition, m.offset) for m in batch if m.offset < first_bad.get(m.partition, 1 << 30)
    )
    assert sorted((s.message.partition, s.message.offset) for s in stuck) == sorted(first_bad.items())
    assert len(offsets(applied)) == len(set(offsets(applied)))  # nothing applied twice
    for part in by_partition(applied):  # per-partition order kept
        assert [m.offset for m in part] == sorted(m.offset for m in part)
