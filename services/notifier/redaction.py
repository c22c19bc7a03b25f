"""Redaction (pure). Need-to-know in webhooks: what a subscription not cleared for restricted data gets of a
restricted review's event: its type, its time and only the ids in its data (review, triggers, documents, merged
reviews) and version numbers; never a title, scope, name, reason or trigger data. Chat webhook URLs: shown
without their path and query, which carry the credential."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

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


def redacted_url(url: str) -> str:
    """A chat webhook's URL as it may be shown: its scheme and host, never its path or query (Slack's and Teams'
    webhook URLs carry their credential there), e.g. `https://hooks.slack.com/…`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}/…"


def hidden(text: str, url: str) -> str:
    """`text` with the URL, or its path and query, replaced by its redacted form (an error may quote it)."""
    parts = urlsplit(url)
    secret_part = url[len(f"{parts.scheme}://{parts.netloc}") :]
    text = text.replace(url, redacted_url(url))
    return text.replace(secret_part, "/…") if len(secret_part) > 1 else text


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None
