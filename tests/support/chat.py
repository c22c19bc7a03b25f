"""Validity of the chat messages smits sends, judged by the platforms' own definitions, not a hand-written shape:
Slack's by the official SDK's Block Kit models (`slack_sdk`), Teams' Adaptive Card by Microsoft's published JSON
schema (vendored in tests/support/vendor/adaptivecards)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from slack_sdk.models.blocks import Block

ADAPTIVE_CARD_SCHEMA = Path(__file__).parent / "vendor" / "adaptivecards" / "adaptive-card-1.5.json"
SLACK_TEXT_MAX = 40_000
"""Slack truncates a message's top-level `text` beyond this."""
SLACK_FIELD_MAX = 2000
"""A section field's text (documented by Slack; the SDK does not check it)."""


def valid_slack(payload: Any) -> list[Block]:
    """The payload's blocks as the SDK parses them; raises unless it is a valid incoming-webhook message:
    a non-empty `text` fallback and blocks the SDK knows, each passing its own validation, with nothing the
    SDK's models would drop (the parsed blocks serialise back to exactly what was sent)."""
    assert isinstance(payload, dict)
    assert set(payload) == {"text", "blocks"}
    assert isinstance(payload["text"], str)
    assert payload["text"].strip()
    assert len(payload["text"]) <= SLACK_TEXT_MAX
    blocks = Block.parse_all(payload["blocks"])
    assert len(blocks) == len(payload["blocks"]) > 0
    for block, sent in zip(blocks, payload["blocks"], strict=True):
        assert block is not None, f"not a Block Kit block: {sent!r}"
        assert type(block) is not Block, f"a block type the SDK does not know: {sent!r}"
        block.validate_json()  # the SDK's limits (header 150, section text 3000, 10 fields, ...)
        assert block.to_dict() == sent
        for field in sent.get("fields", []):
            assert len(field["text"]) <= SLACK_FIELD_MAX
    return blocks


@functools.cache
def _card_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(ADAPTIVE_CARD_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def valid_teams(payload: Any) -> dict[str, Any]:
    """The payload's card; raises unless it is a Teams workflow-webhook message carrying one Adaptive Card that
    the official Adaptive Card 1.5 schema accepts."""
    assert isinstance(payload, dict)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    errors = sorted(_card_validator().iter_errors(card), key=str)
    assert not errors, [error.message for error in errors]
    assert card["version"] == "1.5"
    assert isinstance(card, dict)
    return card


def texts(value: Any) -> str:
    """Every string in a payload, joined (to look for what must not be there)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(texts(item) for item in value.values())
    if isinstance(value, list):
        return "\n".join(texts(item) for item in value)
    return ""
