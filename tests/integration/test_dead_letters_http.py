"""Dead letters over HTTP on the real broker and Postgres: admins list them newest first with the reason, and
replay one to the input topic with its original key, value and headers, audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from services.contracts import topics
from services.core.identity.audit import AuditRow
from services.core.identity.model import Role, Scope
from services.core.settings import Settings
from services.trigger_ingest.persistence import AcceptedTriggerRow, RejectionRow
from tests.support.dead_letters import plant_dead_letter
from tests.support.harness import Harness, smits
from tests.support.kafka import Raw, produce_raw, read_topic
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "triggers"
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def structured(**overrides: Any) -> bytes:
    event = json.loads((EXAMPLES / "regulation_update.json").read_text())
    event.update(overrides)
    return orjson.dumps({key: value for key, value in event.items() if value is not None})


BAD = [
    Raw(b"{not json", STRUCTURED, b"k-json"),
    Raw(structured(id="bad-type", type="smits.trigger.weather.v1"), [*STRUCTURED, ("trace", b"t-1")], b"k-type"),
    Raw(structured(id=None), STRUCTURED, b"k-id"),
]


async def _dead_lettered(app: Harness, settings: Settings, records: list[Raw], *, before: int = 0) -> None:
    """Send `records` (all bad) and wait for their dead letters, `before` of them there already."""
    total = before + len(records)
    await produce_raw(settings, topics.TRIGGERS, records)
    await eventually(lambda: app.count(RejectionRow), lambda n: n == total, what="rejections")
    await eventually(lambda: read_topic(settings, topics.TRIGGERS_DLT), lambda r: len(r) == total, what="DLT")


async def test_admins_list_dead_letters_newest_first_with_reasons_and_page_them(settings: Settings) -> None:
    async with smits(settings, ["ingest"]) as app:
        for n, record in enumerate(BAD):  # one at a time, so they are received in this order
            await _dead_lettered(app, settings, [record], before=n)
        everything = (await app.api.get("/v1/dead-letters")).json()
        first = (await app.api.get("/v1/dead-letters", params={"limit": 2})).json()
        rest = (await app.api.get("/v1/dead-letters", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        unknown = (await app.api.get("/v1/dead-letters", params={"reason": "UnknownType"})).json()
        viewer = await app.person("viewer@corp.example", Role.VIEWER, scopes=[Scope.REVIEWS_READ])
        refused = await viewer.get("/v1/dead-letters")
        refused_replay = await viewer.post(f"/v1/dead-letters/{everything['items'][0]['id']}/replay")
    assert [item["key"] for item in everything["items"]] == ["k-id", "k-type", "k-json"]
    assert [item["reason"] for item in everything["items"]] == ["MissingAttribute", "UnknownType", "InvalidJson"]
    assert everything["next_cursor"] is None
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in everything["items"]]
    assert rest["next_cursor"] is None
    (only,) = unknown["items"]
    assert only["event_id"] == "bad-type"
    assert "smits.trigger.weather.v1" in only["detail"]
    assert only["kafka_topic"] == settings.topic(topics.TRIGGERS)
    assert refused.status_code == refused_replay.status_code == 403
    assert "needs the 'admin' scope" in refused.json()["detail"]


async def test_a_replay_republishes_that_dead_letter_with_its_original_key_value_and_headers(
    settings: Settings,
) -> None:
    async with smits(settings, ["ingest"]) as app:
        await _dead_lettered(app, settings, BAD)
        listed = (await app.api.get("/v1/dead-letters", params={"reason": "UnknownType"})).json()["items"]
        (wanted,) = listed
        response = await app.api.post(f"/v1/dead-letters/{wanted['id']}/replay")
        assert response.status_code == 202, response.text
        await eventually(lambda: app.count(RejectionRow), lambda n: n == len(BAD) + 1, what="rejected again")
        inputs = await read_topic(settings, topics.TRIGGERS)
        async with app.runtime.uow.begin() as session:
            audited = (await session.scalars(select(AuditRow).where(AuditRow.action == "dead_letter.replay"))).all()
    replayed = response.json()
    assert replayed["topic"] == settings.topic(topics.TRIGGERS)
    assert replayed["truncated"] is None
    assert len(inputs) == len(BAD) + 1  # that one, not the others
    again = next(r for r in inputs if (r.partition, r.offset) == (replayed["partition"], replayed["offset"]))
    assert again.key == b"k-type"
    assert again.value == BAD[1].value
    assert list(again.headers) == [*STRUCTURED, ("trace", b"t-1")]  # without the __connect.errors.* ones
    (record,) = audited
    assert record.target == f"dead_letter:{wanted['id']}"
    assert record.detail["reason"] == "UnknownType"
    assert record.detail["to"] == f"{replayed['topic']}/{replayed['partition']}/{replayed['offset']}"


async def test_a_replayed_dead_letter_that_is_valid_now_is_accepted(settings: Settings) -> None:
    valid = Raw(structured(id="fixed-1"), STRUCTURED, b"bu-x")
    async with smits(settings, ["ingest"]) as app:
        dead_letter_id = await plant_dead_letter(app, settings, valid, offset=10_000)
        response = await app.api.post(f"/v1/dead-letters/{dead_letter_id}/replay")
        assert response.status_code == 202, response.text
        await eventually(lambda: app.count(AcceptedTriggerRow), lambda n: n == 1, what="the replay accepted")
        found = (await app.api.get("/v1/triggers", params={"status": "accepted"})).json()["items"]
    assert [item["id"] for item in found] == ["fixed-1"]


async def test_a_replay_of_an_unknown_or_missing_dead_letter_says_why(settings: Settings) -> None:
    async with smits(settings, ["ingest"]) as app:
        unknown = await app.api.post("/v1/dead-letters/999999/replay")
        async with app.runtime.uow.begin() as session:
            row = RejectionRow(
                kafka_topic=settings.topic(topics.TRIGGERS),
                kafka_partition=0,
                kafka_offset=77,
                reason="InvalidJson",
                message="body is not JSON",
                received_at=datetime.now(UTC),
            )
            session.add(row)
            await session.flush()
            missing_id = row.id
        missing = await app.api.post(f"/v1/dead-letters/{missing_id}/replay")
        inputs = await read_topic(settings, topics.TRIGGERS)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no dead letter 999999"
    assert missing.status_code == 409
    assert "is not in" in missing.json()["detail"]
    assert "retention" in missing.json()["detail"]
    assert inputs == []
