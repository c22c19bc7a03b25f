"""Need-to-know in webhooks (pure): what a subscription not cleared for restricted data gets of a restricted
review's event: its type, its time and only the ids in its data (review, triggers, documents, merged reviews)
and version numbers; never a title, scope, name, reason or trigger data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEPT = ("review_id", "document_id", "version", "supersedes", "merged_into", "merged_from")
TRIGGER_ID = ("source", "id")
"""A trigger is named by its CloudEvents source and id."""


def redacted(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ids (and version numbers) of an event's data, and nothing else."""
    kept = {name: data[name] for name in KEPT if name in data}
    trigger = data.get("trigger")
    if isinstance(trigger, Mapping):
        kept["trigger"] = {name: trigger[name] for name in TRIGGER_ID if name in trigger}
    return kept
