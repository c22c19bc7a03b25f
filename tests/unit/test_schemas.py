"""The JSON Schemas in `schemas/` are exactly what the pydantic contracts export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators

from services.contracts.schemas import documents, render
from services.contracts.triggers import Category, event_type
from services.trigger_ingest.domain import STRUCTURED_JSON, Rejection, Trigger, parse_kafka
from tests.support.schema_instances import instances, python_pattern

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_exported_files_match_the_models() -> None:
    expected = documents()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "run `smits schemas export` after changing a contract"
    for name, schema in expected.items():
        assert on_disk[name] == render(schema), f"{name} is stale: run `smits schemas export`"


def test_there_is_one_schema_per_category_with_its_required_fields() -> None:
    for category in Category:
        schema = json.loads((SCHEMAS / f"{event_type(category)}.json").read_text())
        assert schema["additionalProperties"] is False
        assert schema["required"], category


def test_a_changed_model_would_be_noticed() -> None:
    """Guards the guard: a schema with an extra field no longer renders like the file on disk."""
    name = f"{event_type(Category.REGULATION_UPDATE)}.json"
    schema = documents()[name]
    schema["properties"]["added_field"] = {"type": "string"}
    assert render(schema) != (SCHEMAS / name).read_text(encoding="utf-8")


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """JSON Schema patterns are ECMA-262: `$` ends the string (Python's `$` also matches before a final newline)."""
    if isinstance(instance, str) and not re.search(python_pattern(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def _published(category: Category) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{event_type(category)}.json").read_text())
    return schema


def _schema_valid(schema: dict[str, Any], instance: object) -> bool:
    valid: bool = _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).is_valid(instance)
    return valid


def _ingest(category: Category, data: object) -> Trigger | Rejection:
    event = {"specversion": "1.0", "id": "e-1", "source": "/tests", "type": event_type(category), "data": data}
    body = json.dumps(event).encode()  # stdlib: integers of any size, as a producer may send
    return parse_kafka(body, [("content-type", STRUCTURED_JSON.encode())], received_at=datetime.now(UTC))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


@pytest.mark.parametrize("category", list(Category))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_instance_of_a_published_schema_is_accepted_by_ingest(category: Category, data: st.DataObject) -> None:
    schema = _published(category)
    instance = data.draw(instances(schema), label="instance")
    assert _schema_valid(schema, instance)  # guards the generator
    result = _ingest(category, instance)
    assert isinstance(result, Trigger), result


@pytest.mark.parametrize("category", list(Category))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_ingest_rejects_the_published_schema_calls_invalid(category: Category, data: st.DataObject) -> None:
    """Mutate one property of a valid instance (replace, drop or add); if ingest refuses it, so does the schema."""
    schema = _published(category)
    instance = dict(data.draw(instances(schema), label="instance"))
    names = sorted(schema["properties"])
    name = data.draw(st.sampled_from([*names, "unexpected"]), label="property")
    if name != "type" and data.draw(st.booleans(), label="drop") and name in instance:
        del instance[name]
    else:
        probe = st.text() | st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,14})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
        instance[name] = data.draw(JSON_VALUES | probe, label="value")
    if name == "type":
        return  # ingest names the type from the CloudEvent, whatever `data` says
    if isinstance(_ingest(category, instance), Rejection):
        assert not _schema_valid(schema, instance), instance
