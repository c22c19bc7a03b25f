"""Pure parsing and validation of trigger CloudEvents (no I/O).

Kafka binding (CloudEvents 1.0): a `content-type` starting with `application/cloudevents` means structured
mode (the value is the whole event); anything else is binary mode (attributes in `ce_*` headers, the value
is `data`). Every input ends as either a `Trigger` or a `Rejection` naming the problem.

The CloudEvents `subject` attribute is the trigger's scope (what part of the business it concerns, default
`global`): `subject` on the wire and in the columns that store the received event, `scope` in the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from services.contracts.accepted import in_range
from services.contracts.triggers import MODELS_BY_CATEGORY, Category, Severity, category_of
from services.core.bounds import bounded

MAX_EVENT_BYTES = 1024 * 1024
STRUCTURED_PREFIX = "application/cloudevents"
STRUCTURED_JSON = "application/cloudevents+json"
DEFAULT_SCOPE = "global"
"""The scope of an event without a `subject` attribute."""
_REQUIRED = ("specversion", "id", "source", "type")
_MAX_LENGTH = {"id": 500, "source": 500, "type": 200, "subject": 500, "partitionkey": 500}
QUOTE_MAX_CHARS = 100
"""Longest piece of the input a rejection quotes (a header name, a content type, a data key)."""
FIELD_MAX_CHARS = 300


@dataclass(kw_only=True, frozen=True, slots=True)
class Rejection:
    """Why an input was refused. `kind` becomes `__connect.errors.exception.class.name`.

    `source` and `id` are filled when the event got far enough to name them (for status lookups)."""

    kind: str
    message: str
    field: str | None = None
    source: str | None = None
    id: str | None = None


@dataclass(kw_only=True, frozen=True, slots=True)
class Trigger:
    source: str
    id: str
    type: str
    category: Category
    severity: Severity
    scope: str
    """The CloudEvents `subject` attribute."""
    occurred_at: datetime
    data: dict[str, Any]
    data_json: bytes
    """`data` as JSON, encoded once: the stored column and the published `TriggerAccepted` reuse these bytes."""


def parse_kafka(
    value: bytes | None, headers: Sequence[tuple[str, bytes]], *, received_at: datetime
) -> Trigger | Rejection:
    """Turn one Kafka record of the `triggers` topic into a trigger or a rejection."""
    if value is None:
        return Rejection(kind="EmptyValue", message="record has no value")
    if len(value) > MAX_EVENT_BYTES:
        return Rejection(kind="EventTooLarge", message=f"value is {len(value)} bytes; the limit is {MAX_EVENT_BYTES}")
    decoded: dict[str, str] = {}
    for name, raw in headers:
        lowered = name.lower()
        if lowered == "content-type" or lowered.startswith("ce_"):
            try:
                decoded[lowered] = raw.decode("utf-8")
            except UnicodeDecodeError:
                return Rejection(
                    kind="InvalidHeader", message=f"header {_quoted(name)} is not valid UTF-8", field=_field(name)
                )
    content_type = decoded.get("content-type", "")
    if content_type.lower().startswith(STRUCTURED_PREFIX):
        return parse_structured(value, content_type, received_at=received_at)
    attributes = {name[3:]: text for name, text in decoded.items() if name.startswith("ce_")}
    return parse_binary(attributes, value, content_type or None, received_at=received_at)


def parse_structured(body: bytes, content_type: str, *, received_at: datetime) -> Trigger | Rejection:
    if content_type.split(";")[0].strip().lower() != STRUCTURED_JSON:
        return Rejection(
            kind="UnsupportedFormat", message=f"event format {_quoted(content_type)} is not supported; use JSON"
        )
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Rejection(kind="InvalidJson", message=f"value is not JSON: {exc}")
    if not isinstance(event, dict):
        return Rejection(kind="InvalidEvent", message="a structured CloudEvent must be a JSON object")
    return from_event(event, received_at=received_at)


def parse_binary(
    attributes: Mapping[str, str], body: bytes, content_type: str | None, *, received_at: datetime
) -> Trigger | Rejection:
    """Binary mode: `attributes` come from `ce_*` (Kafka) or `ce-*` (HTTP) headers, already decoded."""
    if "specversion" not in attributes:
        return Rejection(kind="MissingAttribute", message="binary-mode event lacks specversion", field="specversion")
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return Rejection(kind="UnsupportedDataContentType", message=f"data content type {_quoted(media)} is not JSON")
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        return Rejection(kind="InvalidJson", message=f"data is not JSON: {exc}", field="data")
    return from_event({**attributes, "data": data}, received_at=received_at)


def from_event(event: Mapping[str, Any], *, received_at: datetime) -> Trigger | Rejection:
    """Validate a CloudEvent given as a mapping of attributes plus `data`."""
    result = _validate_event(event, received_at)
    if isinstance(result, Rejection) and result.source is None:
        source, id_ = event.get("source"), event.get("id")
        if _storable(source, "source") and _storable(id_, "id"):
            return replace(result, source=source, id=id_)
    return result


def _quoted(value: str) -> str:
    """A piece of the input, quoted in a rejection message: bounded, so the message (and the dead letter
    header that carries it) stays small whatever the input."""
    return repr(bounded(value, QUOTE_MAX_CHARS))


def _field(path: str) -> str:
    """A field path built from the input (a header name, data keys), bounded to fit its column."""
    return bounded(path, FIELD_MAX_CHARS)


def _storable(value: object, name: str) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_LENGTH[name] and "\x00" not in value


def _validate_event(event: Mapping[str, Any], received_at: datetime) -> Trigger | Rejection:
    for name in _REQUIRED:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return Rejection(
                kind="MissingAttribute", message=f"required attribute {name!r} is missing or empty", field=name
            )
    for name, limit in _MAX_LENGTH.items():
        value = event.get(name)
        if isinstance(value, str) and len(value) > limit:
            return Rejection(kind="InvalidAttribute", message=f"{name} is longer than {limit} characters", field=name)
        if isinstance(value, str) and "\x00" in value:
            return Rejection(kind="InvalidAttribute", message=f"{name} contains a NUL character", field=name)
    partition_key = event.get("partitionkey")
    if partition_key is not None and (not isinstance(partition_key, str) or not partition_key):
        # the CloudEvents partitioning extension: a string, used as the Kafka key when the event is produced
        return Rejection(
            kind="InvalidAttribute", message="partitionkey must be a non-empty string", field="partitionkey"
        )
    if event["specversion"] != "1.0":
        return Rejection(
            kind="UnsupportedSpecVersion",
            message=f"specversion {_quoted(event['specversion'])} is not 1.0",
            field="specversion",
        )
    category = category_of(event["type"])
    if category is None:
        return Rejection(kind="UnknownType", message=f"unknown trigger type {_quoted(event['type'])}", field="type")
    occurred_at = _time(event.get("time"), received_at)
    if occurred_at is None:
        return Rejection(
            kind="InvalidAttribute", message="time is not an RFC 3339 timestamp from 1970 to 2200", field="time"
        )
    scope = event.get("subject", DEFAULT_SCOPE)
    if not isinstance(scope, str) or not scope:
        return Rejection(kind="InvalidAttribute", message="subject must be a non-empty string", field="subject")
    data = event.get("data")
    if not isinstance(data, dict):
        return Rejection(kind="InvalidData", message="data must be a JSON object", field="data")
    try:
        model = MODELS_BY_CATEGORY[category].model_validate({**data, "type": event["type"]})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field(".".join(["data", *(str(part) for part in first["loc"])]))
        return Rejection(
            kind="InvalidData", message=bounded(f"{field}: {first['msg']}", 2 * FIELD_MAX_CHARS), field=field
        )
    clean = model.model_dump(mode="json", exclude={"type"})
    data_json = orjson.dumps(clean)
    if b"\\u0000" in data_json:  # PostgreSQL text and JSON cannot hold NUL
        return Rejection(kind="InvalidData", message="data contains a NUL character", field="data")
    severity = _severity(event.get("severity"), category, clean, received_at)
    if severity is None:
        return Rejection(
            kind="InvalidAttribute", message="severity must be low, medium, high or critical", field="severity"
        )
    return Trigger(
        source=event["source"],
        id=event["id"],
        type=event["type"],
        category=category,
        severity=severity,
        scope=scope,
        occurred_at=occurred_at,
        data=clean,
        data_json=data_json,
    )


def _time(value: object, default: datetime) -> datetime | None:
    if value is None:
        return default
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return in_range(parsed.astimezone(UTC))
    except (ValueError, OverflowError):
        return None


def _severity(override: object, category: Category, data: Mapping[str, Any], now: datetime) -> Severity | None:
    if override is not None:
        try:
            return Severity(str(override).lower())
        except ValueError:
            return None
    return default_severity(category, data, now)


def default_severity(category: Category, data: Mapping[str, Any], now: datetime) -> Severity:
    """Default severity per category, as DOMAIN.md's trigger table describes."""
    match category:
        case Category.MERGER_ACQUISITION:
            return Severity.HIGH
        case Category.REGULATION_UPDATE:
            effective = date.fromisoformat(data["effective_date"])
            return Severity.HIGH if effective - now.date() <= timedelta(days=90) else Severity.MEDIUM
        case Category.AUDIT_FINDING:
            return Severity(data["finding_severity"])
        case Category.BUDGET_CHANGE:
            return Severity.HIGH if abs(Decimal(str(data["delta_percent"]))) >= 10 else Severity.MEDIUM
        case Category.VENDOR_STRATEGY_CHANGE:
            return Severity.HIGH if data.get("critical_service_affected") else Severity.MEDIUM
        case Category.CUSTOMER_FEEDBACK:
            return Severity.LOW
        case _:
            return Severity.MEDIUM
