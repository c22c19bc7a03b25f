"""Slack and Teams messages of review events: valid for the platforms (their SDK's models, their published schema)
whatever the event's data holds, escaped where it lands in markup, and ids only for a restricted review."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.notifier.chat import HEADLINE_MAX, kind_of, message_of, slack_payload, teams_payload
from services.notifier.flows import subscription_body, webhook_body
from services.notifier.persistence import Channel
from services.notifier.redaction import hidden, redacted_url
from tests.support.chat import texts, valid_slack, valid_teams

PUBLIC = "https://smits.example.org"
MARKUP = "<>&*_~`[]()#|!{}\\<!channel> <@U123> <https://evil.example|click> **b** [x](https://evil.example) {{DATE(x)}}"
TITLE = "Quarterly <b>risk</b> & strategy *review* <!here>"

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from([*MARKUP, "\n", "\r", "\t", "\x00", "\u2028", "é", "漢", "😀"]), max_size=400),
    st.text(min_size=3000, max_size=6000),  # longer than any platform limit
    st.sampled_from([MARKUP, "\ud800 lone surrogate", " \n\t ", "😀" * 200, "&" * 3000, "<" * 200]),
)
datum = st.one_of(hostile_text, st.none(), st.integers(), st.booleans(), st.lists(st.text(max_size=5), max_size=3))
iso = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())


@st.composite
def events(draw: st.DrawFn) -> ReviewEventV1:
    data: dict[str, Any] = {
        name: draw(datum)
        for name in ("title", "summary", "phase", "state", "from", "to", "kind", "document_id")
        if draw(st.booleans())
    }
    if draw(st.booleans()):
        data["due_at"] = draw(st.one_of(iso, hostile_text))
    if draw(st.booleans()):
        data["acknowledge_by"] = draw(iso)
    if draw(st.booleans()):
        data["version"] = draw(st.one_of(st.integers(min_value=1, max_value=10**9), datum))
    return ReviewEventV1(
        id=uuid.uuid4(),
        type=draw(st.sampled_from(list(ReviewEventType))),
        review_id=uuid.uuid4(),
        sequence=draw(st.integers(min_value=1, max_value=1000)),
        occurred_at=datetime(2026, 11, 24, tzinfo=UTC),
        data=data,
        category=draw(st.one_of(st.none(), hostile_text)),
        severity=draw(st.one_of(st.none(), st.sampled_from(["low", "medium", "high", "critical"]))),
        scope=draw(st.one_of(st.none(), hostile_text)),
        restricted=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(event=events(), cleared=st.booleans())
def test_every_event_makes_a_valid_slack_message_and_a_valid_teams_card(event: ReviewEventV1, cleared: bool) -> None:
    slack = orjson.loads(subscription_body(event, Channel.SLACK, cleared=cleared, public_url=PUBLIC))
    teams = orjson.loads(subscription_body(event, Channel.TEAMS, cleared=cleared, public_url=PUBLIC))
    valid_slack(slack)
    valid_teams(teams)
    link = f"{PUBLIC}/reviews/{event.review_id}"
    assert link in texts(slack)
    assert teams["attachments"][0]["content"]["actions"][0]["url"] == link
    for payload in (slack, teams):
        assert "\x00" not in texts(payload)
    objects = [obj for block in slack["blocks"] for obj in [block.get("text", {}), *block.get("fields", [])]]
    for text in [slack["text"], *[obj["text"] for obj in objects if obj.get("type") == "mrkdwn"]]:
        # the only markup in Slack's text is ours: a link to the review, bold labels, entities
        assert text.replace(f"<{link}|Open in smits>", "").count("<") == 0
        assert ">" not in text.replace(f"<{link}|Open in smits>", "")


@settings(max_examples=150, deadline=None)
@given(event=events())
def test_a_restricted_review_s_message_names_no_title_summary_category_or_phase(event: ReviewEventV1) -> None:
    secret = {"title": "SECRET-TITLE", "summary": "SECRET-SUMMARY", "phase": "SECRET-PHASE", "to": "SECRET-TO"}
    event = event.model_copy(
        update={
            "restricted": True,
            "category": "SECRET-CATEGORY",
            "scope": "SECRET-SCOPE",
            "data": {**event.data, **secret},
        }
    )
    message = message_of(event, cleared=False, public_url=PUBLIC)
    assert {name for name, _ in message.facts} <= {"Review", "Document"}
    assert message.summary is None
    for channel in (Channel.SLACK, Channel.TEAMS):
        shown = subscription_body(event, channel, cleared=False, public_url=PUBLIC)
        assert "SECRET-" not in shown
        assert str(event.review_id) in shown
        cleared = subscription_body(event, channel, cleared=True, public_url=PUBLIC)
        for shown_when_cleared in ("SECRET-TITLE", "SECRET-SUMMARY", "SECRET-CATEGORY"):
            assert shown_when_cleared in cleared


def _event(type_: ReviewEventType = ReviewEventType.OPENED, **data: Any) -> ReviewEventV1:
    review_id = uuid.uuid4()
    return ReviewEventV1(
        id=uuid.uuid4(),
        type=type_,
        review_id=review_id,
        sequence=1,
        occurred_at=datetime(2026, 11, 24, tzinfo=UTC),
        data={"review_id": str(review_id), **data},
        category="regulation_update",
        severity="high",
        scope="bu-1",
    )


def test_a_message_says_what_happened_in_words_with_its_facts() -> None:
    event = _event(
        ReviewEventType.TRANSITIONED, title=TITLE, to="approval", due_at="2026-12-01T17:00:00+00:00", summary="Why"
    )
    event = event.model_copy(update={"data": {**event.data, "from": "assessment"}})
    message = message_of(event, cleared=False, public_url=PUBLIC + "/")
    assert message.kind == "Phase changed"
    assert message.headline == TITLE
    assert message.link == f"{PUBLIC}/reviews/{event.review_id}"
    assert dict(message.facts) == {
        "Category": "regulation update",
        "Severity": "high",
        "Phase": "assessment → approval",
        "Due": "2026-12-01 17:00 UTC",
    }
    slack = slack_payload(message)
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": TITLE, "emoji": False}}
    assert slack["text"] == "Phase changed: Quarterly &lt;b&gt;risk&lt;/b&gt; &amp; strategy *review* &lt;!here&gt;"
    card = teams_payload(message)["attachments"][0]["content"]
    assert card["body"][1]["text"] == r"Quarterly \<b\>risk\</b\> & strategy \*review\* \<\!here\>"
    assert {"title": "Phase", "value": "assessment → approval"} in card["body"][2]["facts"]


def test_a_long_title_is_cut_to_the_slack_header_limit() -> None:
    message = message_of(_event(title="x" * 1000), cleared=True, public_url=PUBLIC)
    assert len(message.headline) == HEADLINE_MAX
    assert message.headline.endswith("…")


def test_an_event_type_without_words_is_spelt_out() -> None:
    assert kind_of("review.new_thing") == "Review new thing"
    assert kind_of("review.reminder") == "Reminder"
    assert kind_of("review.document_published") == "Document published"


def test_a_webhook_subscription_still_gets_the_standard_webhooks_body() -> None:
    event = _event()
    assert subscription_body(event, Channel.WEBHOOK, cleared=True, public_url=PUBLIC) == webhook_body(event)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/…"),
        (
            "https://prod-1.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=SECRET",
            "https://prod-1.westeurope.logic.azure.com:443/…",
        ),
        ("http://127.0.0.1:8080/hooks", "http://127.0.0.1:8080/…"),
    ],
)
def test_a_chat_url_is_shown_without_its_path_and_query(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert hidden(f"POST {url} failed", url) == f"POST {shown} failed"
