"""Slack and Teams subscriptions on the real broker and Postgres, delivering to real HTTP receivers on 127.0.0.1:
what arrives is a valid Block Kit message / Adaptive Card (the SDK's models, the published schema), on the same
durable path as webhooks (retries, attempts log, resend, egress policy), and their URL (the credential) is never
shown in full."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.contracts.reviews import ReviewEventType
from services.core.settings import Settings
from services.notifier.persistence import SubscriptionRow
from tests.support.chat import texts, valid_slack, valid_teams
from tests.support.events import publish, review_event
from tests.support.harness import Harness, smits
from tests.support.receiver import Receiver
from tests.support.waiting import eventually

SLACK_PATH = "/services/T0SECRET/B0SECRET/XoXoSeCrEtToKeN"
TEAMS_PATH = "/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=TeAmSsIgNaTuRe"


async def _subscribe(app: Harness, url: str, **fields: Any) -> dict[str, Any]:
    response = await app.api.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(app: Harness, **params: str) -> list[dict[str, Any]]:
    response = await app.api.get("/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def _received(receiver: Receiver, count: int) -> None:
    async def probe() -> int:
        return len(receiver.received)

    await eventually(probe, lambda n: n >= count, what=f"{count} requests")


def _base(receiver: Receiver) -> str:
    return receiver.url.removesuffix("/hooks")


async def test_a_failing_slack_webhook_is_retried_and_logged_and_gets_valid_block_kit(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    with Receiver(default=200, reply=b"ok") as receiver:
        receiver.script(500)
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, _base(receiver) + SLACK_PATH, channel="slack")
            shown = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
            listed = (await app.api.get("/v1/subscriptions")).json()
            rotate = await app.api.post(f"/v1/subscriptions/{sub['id']}/secret/rotate")
            event = review_event(uuid.uuid4(), 1)
            await publish(settings, [event])
            await _received(receiver, 2)
            delivered = await eventually(
                lambda: _deliveries(app, status="delivered", channel="slack"), lambda d: len(d) == 1, what="delivered"
            )
            audit = (await app.api.get("/v1/audit")).text
    assert [a["status_code"] for a in delivered[0]["attempts"]] == [500, 200]
    assert delivered[0]["attempts"][1]["response"] == "ok"
    assert delivered[0]["channel"] == "slack"
    first, second = receiver.received
    assert first.body == second.body  # the retry sends the message planned once
    assert first.path == SLACK_PATH
    assert "webhook-signature" not in first.headers  # not signed: the URL is the credential
    payload = orjson.loads(first.body)
    valid_slack(payload)
    assert event.data["title"] in texts(payload)
    assert f"{settings.public_url}/reviews/{event.review_id}" in texts(payload)
    assert "Review opened" in payload["text"]
    # the credential is never shown again: not by the API, the audit log or the logs
    assert sub["secret"] is None
    assert sub["channel"] == shown["channel"] == listed[0]["channel"] == "slack"
    assert sub["url"] == shown["url"] == f"{_base(receiver)}/…"
    assert sub["rate_limit_per_s"] == 1.0  # Slack's pace unless one is given
    assert rotate.status_code == 409
    assert "T0SECRET" not in audit
    captured = capfd.readouterr()
    assert "T0SECRET" not in captured.out + captured.err


async def test_teams_gets_an_adaptive_card_the_official_schema_accepts_and_a_restricted_review_ids_only(
    settings: Settings,
) -> None:
    with Receiver(default=202) as receiver:
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, _base(receiver) + TEAMS_PATH, channel="teams")
            review_id = uuid.uuid4()
            opened = review_event(review_id, 1)
            published = review_event(review_id, 2, type_=ReviewEventType.DOCUMENT_PUBLISHED)
            published.data.update(
                {"document_id": str(uuid.uuid4()), "version": 2, "summary": "**Why** [it](https://evil.example)"}
            )
            restricted = review_event(uuid.uuid4(), 1).model_copy(update={"restricted": True})
            await publish(settings, [opened, published, restricted])
            await _received(receiver, 3)
            await eventually(
                lambda: _deliveries(app, status="delivered", channel="teams"), lambda d: len(d) == 3, what="delivered"
            )
    assert sub["secret"] is None
    assert sub["rate_limit_per_s"] is None
    assert "sig=" not in sub["url"]
    assert {message.path for message in receiver.received} == {TEAMS_PATH}
    cards = {}
    for message in receiver.received:
        payload = orjson.loads(message.body)
        card = valid_teams(payload)
        cards[texts(card)] = card
    by_title = {t: c for t, c in cards.items() if "need-to-know" not in t}
    (hidden,) = [t for t in cards if "need-to-know" in t]
    assert restricted.data["title"] not in hidden
    assert str(restricted.review_id) in hidden
    assert any("Document published" in t and r"\*\*Why\*\* \[it\]\(https://evil.example\)" in t for t in by_title)
    assert any(opened.data["title"].replace("#", r"\#") in t for t in by_title)  # Markdown taken literally


async def test_slack_answering_404_fails_the_message_at_once_and_resend_sends_it_again(settings: Settings) -> None:
    with Receiver(default=404, reply=b"channel_not_found") as receiver:
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(app, _base(receiver) + SLACK_PATH, channel="slack", rate_limit_per_s=None)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            failed = await eventually(
                lambda: _deliveries(app, status="failed"), lambda d: len(d) == 1, what="failed at once"
            )
            receiver.default = 200
            resent = await app.api.post(f"/v1/deliveries/{failed[0]['id']}/resend")
            await eventually(lambda: _deliveries(app, status="delivered"), lambda d: len(d) == 1, what="resent")
    assert [a["status_code"] for a in failed[0]["attempts"]] == [404]
    assert failed[0]["attempts"][0]["response"] == "channel_not_found"
    assert resent.status_code == 202
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body


@pytest.mark.parametrize("channel", ["slack", "teams"])
async def test_a_chat_url_to_a_non_permitted_address_is_refused_as_for_webhooks(
    settings: Settings, channel: str
) -> None:
    async with smits(settings, ["notifier"]) as app:
        refused = await app.api.post(
            "/v1/subscriptions", json={"url": f"http://169.254.169.254{SLACK_PATH}", "channel": channel}
        )
        # stored past the check (as if DNS changed after it): the send is refused by the egress policy
        async with app.runtime.uow.begin() as session:
            session.add(
                SubscriptionRow(
                    id=uuid.uuid4(),
                    url=f"http://10.0.0.1:9{SLACK_PATH}",
                    secret="",
                    channel=channel,
                    event_types=["review.*"],
                    categories=[],
                    severities=[],
                    scopes=[],
                    enabled=True,
                    created_at=datetime.now(UTC),
                )
            )
        await publish(settings, [review_event(uuid.uuid4(), 1)])
        attempted = await eventually(
            lambda: _deliveries(app, channel=channel),
            lambda d: len(d) == 1 and len(d[0]["attempts"]) >= 1,
            what="an attempt",
        )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert "T0SECRET" not in refused.text
    attempt = attempted[0]["attempts"][0]
    assert attempt["status_code"] is None
    assert "EgressRefused" in attempt["error"]
    assert "T0SECRET" not in attempt["error"]


async def test_a_webhook_subscription_is_unchanged_signed_with_its_secret(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await _received(receiver, 1)
    assert sub["channel"] == "webhook"
    assert sub["secret"].startswith("whsec_")
    assert sub["url"] == receiver.url
    assert "webhook-signature" in receiver.received[0].headers
    assert orjson.loads(receiver.received[0].body)["type"] == "review.opened"
