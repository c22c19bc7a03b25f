"""Slack and Microsoft Teams messages of review events (pure): a `ChatMessage` read from the event, then a Slack
incoming-webhook body (Block Kit) or a Teams workflow-webhook body (one Adaptive Card 1.5).

Rendered when the delivery is planned, not when it is sent: the stored body is then exactly what every attempt
and a resend POST (the delivery log and the receiver see the same bytes), and a restricted review's message is
already the ids-only one when it is stored, so nothing can later send more. The cost is that a message keeps
the `SMITS_PUBLIC_URL` of its planning, which is what a link already sent would have anyway.

Everything taken from the event is untrusted text. It is cleaned (no control characters or lone surrogates),
bounded to the platforms' limits (Slack: header 150 characters, section text 3,000, a field 2,000) and escaped
where it lands in markup: Slack `mrkdwn` gets `&`, `<`, `>` as entities (so no `<!channel>` or `<url|link>` can be
smuggled in), and the Teams card's text gets a backslash before Markdown's inline syntax and before `{`, `}` (no
link, emphasis or `{{DATE()}}` function from a title). The Slack header and summary are `plain_text` (never
parsed).

Need-to-know: for a subscription not cleared for restricted data, a restricted review's message names only the
event's type, its ids and the link (as its webhook carries only ids); never a title, summary, category or phase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.notifier.event_data import instant
from services.notifier.redaction import redacted

HEADLINE_MAX = 150
"""Characters of a headline (Slack's header block holds 150)."""
SUMMARY_MAX = 2000
"""Characters of a summary (a Slack section holds 3,000)."""
FACT_MAX = 200
"""Characters of one fact's value; escaped, a Slack field (2,000 at most) still holds it with its label."""
FIELDS_MAX = 10
"""Slack's limit on a section's fields."""
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD_VERSION = "1.5"

KINDS: Mapping[str, str] = {
    ReviewEventType.OPENED: "Review opened",
    ReviewEventType.UPDATED: "Review updated",
    ReviewEventType.TRIGGER_ATTACHED: "Trigger attached",
    ReviewEventType.TRANSITIONED: "Phase changed",
    ReviewEventType.ASSESSMENT_RECORDED: "Assessment recorded",
    ReviewEventType.APPROVAL_RECORDED: "Approval recorded",
    ReviewEventType.DOCUMENT_PUBLISHED: "Document published",
    ReviewEventType.OVERDUE: "Review overdue",
    ReviewEventType.ESCALATED: "Review escalated",
    ReviewEventType.REMINDER: "Reminder",
    ReviewEventType.CLOSED: "Review closed",
    ReviewEventType.ACKNOWLEDGEMENT_DUE: "Acknowledgement due",
    ReviewEventType.DOCUMENT_ACKNOWLEDGED: "Document acknowledged",
}
"""An event type in words; a type not listed is spelt out from its name (`review.new_thing`: "Review new thing")."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_BLANKS = re.compile(r"\s+")
_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = re.compile(r"([\\`*_~\[\]()<>#{}|!])")
_LINK_SAFE = ":/?#@!$&'()*+,;=%~-._"


@dataclass(kw_only=True, frozen=True, slots=True)
class ChatMessage:
    """What a chat message says, cleaned and bounded, not yet escaped for any platform."""

    kind: str
    headline: str
    link: str
    facts: tuple[tuple[str, str], ...]
    summary: str | None


def kind_of(event_type: str) -> str:
    known = KINDS.get(event_type)
    if known is not None:
        return known
    words = event_type.replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Event"


def message_of(event: ReviewEventV1, *, cleared: bool, public_url: str) -> ChatMessage:
    """The message of `event` for a subscription `cleared` (or not) for restricted data."""
    review_id = str(event.review_id)
    link = f"{public_url.rstrip('/')}/reviews/{review_id}"
    kind = kind_of(event.type.value)
    if event.restricted and not cleared:
        return ChatMessage(
            kind=kind,
            headline=f"A need-to-know review ({review_id})",
            link=link,
            facts=_id_facts(redacted(event.data), review_id),
            summary=None,
        )
    data = event.data
    title = _one_line(data.get("title"), HEADLINE_MAX)
    facts = [
        ("Category", _words(event.category)),
        ("Severity", _words(event.severity)),
        ("Phase", _phase(event.type, data)),
        ("Due", _due(data)),
        ("Document", _document(data)),
    ]
    return ChatMessage(
        kind=kind,
        headline=title or f"Review {review_id}",
        link=link,
        facts=tuple((name, value) for name, value in facts if value),
        summary=_bounded(_clean(data["summary"]), SUMMARY_MAX) if _has_text(data.get("summary")) else None,
    )


def slack_payload(message: ChatMessage) -> dict[str, Any]:
    """An incoming-webhook body: `text` (the notification's fallback) and Block Kit `blocks`."""
    link = _slack(_url(message.link))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.headline, "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack(message.kind)}* · <{link}|Open in smits>"}},
    ]
    if message.facts:
        fields = [{"type": "mrkdwn", "text": f"*{name}*\n{_slack(value)}"} for name, value in message.facts]
        blocks.append({"type": "section", "fields": fields[:FIELDS_MAX]})
    if message.summary:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": message.summary, "emoji": False}})
    return {"text": f"{_slack(message.kind)}: {_slack(message.headline)}", "blocks": blocks}


def teams_payload(message: ChatMessage) -> dict[str, Any]:
    """A workflow-webhook body: a message with one Adaptive Card 1.5 attachment."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _markdown(message.kind), "isSubtle": True, "wrap": True},
        {"type": "TextBlock", "text": _markdown(message.headline), "size": "Large", "weight": "Bolder", "wrap": True},
    ]
    if message.facts:
        facts = [{"title": name, "value": _markdown(value)} for name, value in message.facts]
        body.append({"type": "FactSet", "facts": facts})
    if message.summary:
        body.append({"type": "TextBlock", "text": _markdown(message.summary), "wrap": True})
    card = {
        "type": "AdaptiveCard",
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open in smits", "url": _url(message.link)}],
    }
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
    return {"type": "message", "attachments": [attachment]}


# Reading the event's data: anything may be there, of any type.


def _id_facts(data: Mapping[str, Any], review_id: str) -> tuple[tuple[str, str], ...]:
    facts = [("Review", review_id)]
    document = _document(data)
    if document:
        facts.append(("Document", document))
    return tuple(facts)


def _phase(event_type: ReviewEventType, data: Mapping[str, Any]) -> str | None:
    if event_type is ReviewEventType.TRANSITIONED:
        before, after = _words(data.get("from")), _words(data.get("to"))
        return _bounded(f"{before} → {after}", FACT_MAX) if before and after else after
    return _words(data.get("phase")) or _words(data.get("state"))


def _due(data: Mapping[str, Any]) -> str | None:
    for name in ("due_at", "acknowledge_by"):
        when = instant(data.get(name))
        if when is not None:
            return when.strftime("%Y-%m-%d %H:%M UTC")
    return None


def _document(data: Mapping[str, Any]) -> str | None:
    version = data.get("version")
    document_id = _one_line(data.get("document_id"), 100)
    if document_id is None or not isinstance(version, int) or isinstance(version, bool):
        return None
    kind = _one_line(data.get("kind"), 50)
    return _bounded(f"{kind + ' ' if kind else ''}{document_id}, version {version}", FACT_MAX)


def _has_text(value: object) -> bool:
    return isinstance(value, str) and bool(_clean(value).strip())


def _clean(text: str) -> str:
    """Valid UTF-8 (lone surrogates replaced), no control characters but line breaks and tabs."""
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def _one_line(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = _BLANKS.sub(" ", _clean(value)).strip()
    return _bounded(text, limit) if text else None


def _words(value: object) -> str | None:
    """A name (category, state) in words: cleaned, on one line, underscores as blanks."""
    text = _one_line(value, FACT_MAX)
    return text.replace("_", " ") if text else None


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


# Escaping for where the text lands.


def _slack(text: str) -> str:
    """Text for Slack `mrkdwn` (its three control characters as entities)."""
    return "".join(_SLACK_ENTITIES.get(char, char) for char in text)


def _markdown(text: str) -> str:
    """Text for an Adaptive Card's Markdown subset: its syntax characters taken literally."""
    return _MARKDOWN.sub(r"\\\1", text)


def _url(link: str) -> str:
    """The link with anything that could end or split it in markup percent-encoded (`|`, `>`, blanks)."""
    return quote(link, safe=_LINK_SAFE)
