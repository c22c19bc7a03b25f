"""Trigger ingest on the real broker and Postgres: both CloudEvents modes, dead letters, dedup, crashes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import select

from services.contracts import topics
from services.contracts.triggers import Category
from services.core.kafka import Message
from services.core.outbox import OutboxRelay
from services.core.runtime import running
from services.core.settings import Settings
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow, IngestOutboxRow, RejectionRow
from services.trigger_ingest.replay import replay_dead_letters
from services.trigger_ingest.transport.consumer import trigger_consumer
from tests.support.harness import Harness, produce, smits
from tests.support.kafka import Raw, produce_raw, read_topic
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "triggers"
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def example(category: Category) -> CloudEvent:
    path = EXAMPLES / f"{category.value}.json"
    event = json.loads(path.read_text())
    event["time"] = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    data = event.pop("data")
    return CloudEvent(attributes=event, data=data)


async def _rows(app: Harness, model: Any) -> list[Any]:
    async with app.runtime.uow.begin() as session:
        return list((await session.scalars(select(model))).all())


@pytest.mark.parametrize("category", list(Category))
async def test_each_category_is_accepted_in_structured_and_binary_mode(settings: Settings, category: Category) -> None:
    structured = example(category)
    attributes = {**structured.get_attributes(), "id": structured.get_id() + "-binary"}
    binary = CloudEvent(attributes=attributes, data=structured.get_data())
    async with smits(settings, ["ingest"]) as app:
        await produce(settings, [structured])
        await produce(settings, [binary], binary=True)
        await eventually(lambda: app.count(AcceptedTriggerRow), lambda n: n == 2, what="both modes accepted")
        rows = await _rows(app, AcceptedTriggerRow)
        accepted = await eventually(
            lambda: read_topic(settings, topics.TRIGGERS_ACCEPTED), lambda r: len(r) == 2, what="TriggerAccepted"
        )
    assert {row.category for row in rows} == {category.value}
    assert rows[0].data == rows[1].data == structured.get_data() | rows[0].data  # validated, defaults filled
    events = [orjson.loads(record.value) for record in accepted]
    assert {e["id"] for e in events} == {structured.get_id(), structured.get_id() + "-binary"}
    for record, event in zip(accepted, events, strict=True):
        assert record.key == event["subject"].encode() == structured.get_subject().encode()  # type: ignore[union-attr]
        assert event["kind"] == "TriggerAccepted"
        assert event["category"] == category.value
        assert event["severity"] in {"low", "medium", "high", "critical"}


def _structured(**overrides: Any) -> bytes:
    event = json.loads((EXAMPLES / "regulation_update.json").read_text())
    event.update(overrides)
    return orjson.dumps({key: value for key, value in event.items() if value is not None})


BAD: list[tuple[str, Raw, str]] = [
    ("not json", Raw(b"{not json", STRUCTURED, b"k1"), "smits.InvalidJson"),
    ("missing id", Raw(_structured(id=None), STRUCTURED, b"k2"), "smits.MissingAttribute"),
    ("unknown type", Raw(_structured(type="smits.trigger.weather.v1"), STRUCTURED, b"k3"), "smits.UnknownType"),
    (
        "wrong field type",
        Raw(_structured(data={"regulation_id": 7, "title": "t"}), STRUCTURED, b"k4"),
        "smits.InvalidData",
    ),
    ("2 MiB value", Raw(b"{" + b" " * (2 * 1024 * 1024) + b"}", STRUCTURED, b"k5"), "smits.EventTooLarge"),
    (
        "binary without ce_specversion",
        Raw(b"{}", [("ce_id", b"b1"), ("ce_source", b"/s"), ("ce_type", b"smits.trigger.goal_change.v1")], b"k6"),
        "smits.MissingAttribute",
    ),
    (
        "invalid UTF-8 header",
        Raw(b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"\xc3\x28"), ("trace", b"\xff")], b"k7"),
        "smits.InvalidHeader",
    ),
]


async def test_bad_inputs_are_dead_lettered_with_reasons_and_the_consumer_keeps_going(settings: Settings) -> None:
    valid = Raw(_structured(id="after-the-bad-ones"), STRUCTURED, b"ok")
    async with smits(settings, ["ingest"]) as app:
        await produce_raw(settings, topics.TRIGGERS, [raw for _, raw, _ in BAD] + [valid])
        await eventually(
            lambda: app.count(AcceptedTriggerRow), lambda n: n == 1, what="the valid trigger after the bad"
        )
        await eventually(lambda: app.count(RejectionRow), lambda n: n == len(BAD), what="rejection rows")
        dead = await eventually(
            lambda: read_topic(settings, topics.TRIGGERS_DLT), lambda r: len(r) == len(BAD), what="dead letters"
        )
    by_key = {record.key: record for record in dead}
    for name, raw, exception_class in BAD:
        record = by_key[raw.key]
        headers = dict(record.headers)
        assert record.value == raw.value, name
        for header in raw.headers:
            assert header in record.headers, name  # original headers kept, byte for byte
        assert headers["__connect.errors.exception.class.name"].decode() == exception_class, name
        assert headers["__connect.errors.topic"].decode() == settings.topic(topics.TRIGGERS)
        assert int(headers["__connect.errors.partition"]) in range(settings.topic_partitions)
        assert int(headers["__connect.errors.offset"]) >= 0
        assert headers["__connect.errors.exception.message"].decode(), name


async def test_dlq_replay_republishes_dead_letters_without_error_headers(settings: Settings) -> None:
    bad = [
        Raw(_structured(id=f"bad-{n}", type="smits.trigger.weather.v1"), STRUCTURED, f"r{n}".encode()) for n in range(3)
    ]
    async with smits(settings, ["ingest"]) as app:
        await produce_raw(settings, topics.TRIGGERS, bad)
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 3, what="first rejections")
        await eventually(lambda: read_topic(settings, topics.TRIGGERS_DLT), lambda r: len(r) == 3, what="DLT")
        assert await replay_dead_letters(settings, limit=2) == 2
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 5, what="replayed ones rejected again")
        inputs = await read_topic(settings, topics.TRIGGERS)
    replayed = inputs[len(bad) :]
    assert len(inputs) == 5
    for record in replayed:
        assert not [name for name, _ in record.headers if name.startswith("__connect.errors.")]
        assert record.headers == list(STRUCTURED) or tuple(record.headers) == tuple(STRUCTURED)
        assert record.key in {raw.key for raw in bad}
    assert await replay_dead_letters(settings, since=datetime(2100, 1, 1, tzinfo=UTC)) == 0


class Crash(Exception):
    """Stands for the process dying after the DB commit and before the offset commit."""


async def test_thousand_events_with_duplicates_survive_a_crash_between_db_and_offset_commit(
    settings: Settings,
) -> None:
    unique = [Raw(_structured(id=f"evt-{n}"), STRUCTURED, f"key-{n % 7}".encode()) for n in range(900)]
    records = unique + [unique[n * 9] for n in range(100)]  # 100 repeats of the same (source, id)
    await produce_raw(settings, topics.TRIGGERS, records)

    def crash_after_first_batch(batch: Sequence[Message]) -> None:
        raise Crash(f"after committing {len(batch)} records")

    async with running(settings, {}) as (runtime, _):
        relay = OutboxRelay(uow=runtime.uow, row=IngestOutboxRow, producer=runtime.producer, settings=settings)
        doomed = trigger_consumer(settings=settings, uow=runtime.uow, relay=relay, after_handle=crash_after_first_batch)
        with pytest.raises(Crash):
            await doomed.run(asyncio.Event())
        harness = Harness(runtime, None, None)  # type: ignore[arg-type]
        stored_before_restart = await harness.count(AcceptedTriggerRow) + await harness.count(DuplicateRow)
        assert 0 < stored_before_restart < len(records)

        stop = asyncio.Event()
        restarted = trigger_consumer(settings=settings, uow=runtime.uow, relay=relay)
        tasks = [asyncio.create_task(restarted.run(stop)), asyncio.create_task(relay.run(stop))]
        await eventually(lambda: harness.count(DuplicateRow), lambda n: n == 100, what="all duplicates seen")
        await eventually(lambda: harness.count(IngestOutboxRow), lambda n: n == 0, what="outbox drained")
        stop.set()
        await asyncio.gather(*tasks)
        assert await harness.count(AcceptedTriggerRow) == 900
    accepted = await read_topic(settings, topics.TRIGGERS_ACCEPTED)
    ids = [orjson.loads(record.value)["id"] for record in accepted]
    assert len(ids) == 900
    assert set(ids) == {f"evt-{n}" for n in range(900)}
