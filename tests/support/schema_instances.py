"""Hypothesis strategies for the instances a published JSON Schema admits.

hypothesis-jsonschema does the general case but no longer runs on current Hypothesis, so this covers the
keywords our exported contract schemas use (object, string, number, integer, boolean, null, array, enum,
const, anyOf, local `$ref`, `format: date`) and refuses any other, so a new keyword cannot be skipped
silently. Patterns are ECMA-262: `$` ends the string.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

Schema = dict[str, Any]

_KNOWN = {
    "$defs", "$id", "$ref", "$schema", "additionalProperties", "anyOf", "const", "default", "enum", "format",
    "items", "maxItems", "maxLength", "maximum", "minItems", "minLength", "minimum", "pattern", "properties",
    "required", "title", "type",
}  # fmt: skip
_CHARACTERS = st.characters(codec="utf-8")  # JSON text is UTF-8: no lone surrogates


def python_pattern(pattern: str) -> str:
    """An ECMA-262 pattern as a Python one (`$` → `\\Z`; our patterns use `$` only as the end anchor)."""
    return pattern.replace("$", r"\Z")


def instances(schema: Schema, root: Schema | None = None) -> st.SearchStrategy[Any]:
    root = schema if root is None else root
    unknown = set(schema) - _KNOWN
    if unknown:
        raise NotImplementedError(f"schema keywords not covered: {sorted(unknown)}")
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return instances(root["$defs"][name], root)
    if "anyOf" in schema:
        return st.one_of([instances(branch, root) for branch in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _objects(schema, root)
    if kind == "array":
        items = instances(schema["items"], root)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 5), 5))
    if kind == "string":
        return _strings(schema)
    if kind in ("number", "integer"):
        low, high = schema.get("minimum"), schema.get("maximum")
        integers = st.integers(min_value=low, max_value=high)
        if kind == "integer":
            return integers
        return integers | st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise NotImplementedError(f"schema not covered: {schema}")


def _objects(schema: Schema, root: Schema) -> st.SearchStrategy[dict[str, Any]]:
    assert schema.get("additionalProperties") is False, "open objects are not covered"
    required = set(schema.get("required", ()))
    properties = {name: instances(sub, root) for name, sub in schema["properties"].items()}
    return st.fixed_dictionaries(
        {name: value for name, value in properties.items() if name in required},
        optional={name: value for name, value in properties.items() if name not in required},
    )


def _strings(schema: Schema) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if schema.get("format") == "date":
        return st.dates().map(lambda day: day.isoformat())
    if "format" in schema:
        raise NotImplementedError(f"format not covered: {schema['format']}")
    if "pattern" not in schema:
        return st.text(_CHARACTERS, min_size=low, max_size=high)
    pattern = re.compile(python_pattern(schema["pattern"]))
    return st.from_regex(pattern, alphabet=_CHARACTERS).filter(
        lambda text: low <= len(text) and (high is None or len(text) <= high)
    )
