"""`TriggerAccepted` v1: what ingest hands to the engine on `triggers.accepted`, keyed by scope.

`subject` is the CloudEvents attribute under its wire name: the trigger's scope (what part of the business it
concerns). Code calls it scope (ingest's parsed `Trigger.scope`, a review's `scope`, subscriptions' `scopes`);
wire formats (CloudEvents, this contract, review event data, the policy placeholder `{subject}`) and the
columns that store a received event keep `subject`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.contracts.triggers import Category, Severity


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _no_nul_inside(value: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = orjson.dumps(value)  # fast, and refuses what the slow way below tells apart
    except orjson.JSONEncodeError:  # an integer over 64 bits, or a lone surrogate
        return _no_nul_inside_slowly(value)
    if b"\\u0000" in encoded:  # JSON escapes NUL
        raise ValueError("must not contain NUL characters")
    return value


def _no_nul_inside_slowly(value: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(value, ensure_ascii=False)  # stdlib json: integers of any size
    if "\\u0000" in text:  # json escapes NUL even with ensure_ascii=False
        raise ValueError("must not contain NUL characters")
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate (`"\ud800"` in JSON) no database can store
        raise ValueError("must not contain lone surrogate characters") from exc
    return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def in_range(value: datetime) -> datetime:
    """Event times from 1970 to 2200: window arithmetic on them can never overflow."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError("must be between 1970 and 2200")
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(in_range)]


Name = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_nul)]
"""Limits ingest enforces on CloudEvents attributes, so the engine's columns always fit."""


class TriggerAcceptedV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["TriggerAccepted"] = "TriggerAccepted"
    version: Literal[1] = 1
    source: Name
    id: Name
    type: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
    category: Category
    severity: Severity
    subject: Name
    occurred_at: EventTime
    received_at: EventTime
    data: Annotated[dict[str, Any], AfterValidator(_no_nul_inside)]
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None


def accepted_json(
    *,
    source: str,
    id: str,
    type: str,
    category: Category,
    severity: Severity,
    subject: str,
    occurred_at: datetime,
    received_at: datetime,
    data_json: bytes,
    trace_id: str | None,
) -> bytes:
    """A `TriggerAcceptedV1` as published, from values already held to its constraints and `data` already
    encoded as JSON: the bytes `TriggerAcceptedV1(...).model_dump(mode="json")` serialised by orjson gives,
    without building (and validating again) the model or encoding `data` again. A test keeps the two equal."""
    return orjson.dumps(
        {
            "kind": "TriggerAccepted",
            "version": 1,
            "source": source,
            "id": id,
            "type": type,
            "category": category.value,
            "severity": severity.value,
            "subject": subject,
            "occurred_at": occurred_at.astimezone(UTC),
            "received_at": received_at.astimezone(UTC),
            "data": orjson.Fragment(data_json),
            "trace_id": trace_id,
        },
        option=orjson.OPT_UTC_Z,
    )
