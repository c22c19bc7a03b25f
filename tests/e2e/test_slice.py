"""The foundation slice on the real broker and real Postgres: CloudEvent → review → signed webhook."""

from __future__ import annotations

from pathlib import Path

import orjson
from standardwebhooks import Webhook

from services.core.settings import Settings
from services.core.tracing import trace_id_of
from services.notifier.persistence import DeliveryRow
from services.strategy_engine.persistence import ReviewRow
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow
from tests.support.harness import produce, regulation_event, smits
from tests.support.kafka import read_topic
from tests.support.receiver import Receiver
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "triggers"


async def test_regulation_update_becomes_a_signed_review_opened_webhook(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings) as app:
            created = await app.api.post("/v1/subscriptions", json={"url": receiver.url, "event_types": ["review.*"]})
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            assert secret.startswith("whsec_")

            await produce(settings, [regulation_event()])
            await eventually(lambda: _async(len(receiver.received)), lambda n: n >= 1, what="webhook")

            reviews = (await app.api.get("/v1/reviews")).json()["items"]
            trigger = await app.api.get("/v1/triggers//regulatory/feed/reg-1")
            metrics = (await app.api.get("/metrics")).text

    assert len(reviews) == 1
    assert reviews[0]["category"] == "regulation_update"
    assert reviews[0]["correlation_key"] == "regulation:DORA-2025"
    assert reviews[0]["state"] == "triage"
    assert trigger.status_code == 200, trigger.text
    assert trigger.json()["status"] == "accepted"
    assert trigger.json()["severity"] in {"high", "medium"}  # depends on today vs effective date; unit-tested

    group, topic = f"{settings.topic_prefix}ingest", settings.topic("triggers")
    assert f'kafka_consumergroup_lag{{consumergroup="{group}",partition="0",topic="{topic}"}}' in metrics
    assert 'smits_triggers_total{category="regulation_update",outcome="accepted"}' in metrics
    assert 'smits_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert 'smits_outbox_backlog{outbox="ingest_outbox"}' in metrics
    assert "smits_http_request_duration_seconds_bucket" in metrics

    message = receiver.received[0]
    payload = Webhook(secret).verify(message.body, message.headers)  # raises if the signature is wrong
    assert payload["type"] == "review.opened"
    assert payload["data"]["review_id"] == reviews[0]["id"]
    assert payload["data"]["trigger"] == {
        "source": "/regulatory/feed",
        "id": "reg-1",
        "category": "regulation_update",
        "severity": trigger.json()["severity"],
        "subject": "bu-payments",
    }
    assert message.headers["webhook-id"].startswith("msg_")
    assert orjson.loads(message.body)["timestamp"]


async def test_the_same_cloudevent_twice_opens_one_review_and_one_delivery(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings) as app:
            await app.api.post("/v1/subscriptions", json={"url": receiver.url, "event_types": ["review.opened"]})
            await produce(settings, [regulation_event(), regulation_event()])
            # The second copy has been consumed once it is recorded as a duplicate.
            await eventually(lambda: app.count(DuplicateRow), lambda n: n == 1, what="duplicate recorded")
            await eventually(lambda: _async(len(receiver.received)), lambda n: n >= 1, what="webhook")
            await produce(settings, [regulation_event(event_id="reg-2", regulation_id="NIS2")])
            await eventually(lambda: app.count(DeliveryRow), lambda n: n == 2, what="second review's delivery")
            await eventually(lambda: _async(len(receiver.received)), lambda n: n >= 2, what="second webhook")

            assert await app.count(AcceptedTriggerRow) == 2
            assert await app.count(ReviewRow) == 2
            assert await app.count(DeliveryRow) == 2
    ids = [message.headers["webhook-id"] for message in receiver.received]
    assert len(ids) == len(set(ids)) == 2


async def test_a_traceparent_sent_with_the_trigger_comes_back_on_the_webhook(settings: Settings) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = orjson.loads((EXAMPLES / "goal_change.json").read_bytes())
    with Receiver() as receiver:
        async with smits(settings) as app:
            await app.api.post("/v1/subscriptions", json={"url": receiver.url})
            posted = await app.api.post(
                "/v1/triggers",
                content=orjson.dumps(event),
                headers={
                    "content-type": "application/cloudevents+json",
                    "traceparent": f"00-{trace}-00f067aa0ba902b7-01",
                },
            )
            assert posted.status_code == 202
            await eventually(lambda: _async(len(receiver.received)), lambda n: n >= 1, what="webhook")
        accepted = await read_topic(settings, "triggers.accepted")
    assert trace_id_of(receiver.received[0].headers["traceparent"]) == trace
    assert orjson.loads(accepted[0].value)["trace_id"] == trace
    assert trace_id_of(dict(accepted[0].headers)["traceparent"].decode()) == trace


async def _async(value: int) -> int:
    return value
