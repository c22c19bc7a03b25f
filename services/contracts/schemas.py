"""Export the contracts as JSON Schema files (`smits schemas export`); a test keeps `schemas/` in sync."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.reviews import ReviewEventV1
from services.contracts.triggers import MODELS_BY_CATEGORY, event_type

BASE_ID = "https://smits.example/schemas/"


def documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every trigger category's `data` and the inter-service events."""
    models: dict[str, type[BaseModel]] = {
        f"{event_type(category)}.json": model for category, model in MODELS_BY_CATEGORY.items()
    }
    models["TriggerAccepted.v1.json"] = TriggerAcceptedV1
    models["ReviewEvent.v1.json"] = ReviewEventV1
    return {name: _schema(name, model) for name, model in sorted(models.items())}


def _schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": BASE_ID + name, **schema}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in documents().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
