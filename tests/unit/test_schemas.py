"""The JSON Schemas in `schemas/` are exactly what the pydantic contracts export."""

from __future__ import annotations

import json
from pathlib import Path

from services.contracts.schemas import documents, render
from services.contracts.triggers import Category, event_type

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
