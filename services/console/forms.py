"""Form fields named by their API path (`risk.likelihood`, `constraints.0.title`) to JSON and back, so the
API's validation errors land beside the field they are about. Pure."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

LISTS = frozenset({"approvers.names", "affected_services", "affected_business_units", "recommendation.alternatives"})
"""Fields typed as one text box holding a list (comma or line separated)."""
_SPLIT = re.compile(r"[,\n]")


def nest(fields: Mapping[str, str]) -> dict[str, Any]:
    """`{"risk.likelihood": "3"}` → `{"risk": {"likelihood": "3"}}`; numeric parts make lists; empty fields
    and groups left wholly empty are left out (the API's defaults apply)."""
    root: dict[str, Any] = {}
    for name, raw in fields.items():
        value: Any = raw.strip()
        if name in LISTS:
            value = [item.strip() for item in _SPLIT.split(value) if item.strip()]
        if value in ("", []):
            continue
        node = root
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    nested: dict[str, Any] = _lists(root)
    return nested


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def flatten(body: Any, prefix: str = "") -> dict[str, str]:
    """The inverse of `nest`, to fill a form from what the API holds."""
    if prefix in LISTS and isinstance(body, list):
        return {prefix: ", ".join(str(item) for item in body)}
    items: list[tuple[str, Any]]
    if isinstance(body, dict):
        items = [(str(key), value) for key, value in body.items()]
    elif isinstance(body, list):
        items = [(str(index), value) for index, value in enumerate(body)]
    else:
        return {} if body is None else {prefix: str(body)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def split(text: str) -> list[str]:
    """One text box holding a list (`review.opened, review.closed`, comma or line separated) as that list."""
    return [item.strip() for item in _SPLIT.split(text) if item.strip()]


MISSED_PATTERN = "String should match pattern"


def by_box(
    errors: Mapping[str, str], boxes: Collection[str], words: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Validation messages for a form with one box (or one group of checkboxes) per top-level field: those
    about its `boxes` keyed by box (`event_types.1` is about the `event_types` box), and the rest as
    `field: message` to show above the form. A value that missed a pattern is told what `words` says for its
    field rather than shown the regular expression."""
    beside: dict[str, str] = {}
    elsewhere: list[str] = []
    for name, message in errors.items():
        box = name.split(".")[0]
        if message.startswith(MISSED_PATTERN) and words and box in words:
            message = words[box]
        if box in boxes:
            beside.setdefault(box, message)
        else:
            elsewhere.append(f"{name}: {message}")
    return beside, elsewhere


def placed(errors: Mapping[str, str], boxes: Collection[str], words: Mapping[str, str]) -> dict[str, Any]:
    """A refused form's messages as its template takes them: `errors` beside their boxes, `elsewhere` above
    the form (see `by_box`)."""
    beside, elsewhere = by_box(errors, boxes, words)
    return {"errors": beside, "elsewhere": elsewhere}
