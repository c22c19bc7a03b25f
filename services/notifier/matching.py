"""Which subscriptions want an event (pure)."""

from __future__ import annotations

from collections.abc import Iterable


def type_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Exact types, prefixes ending in `.*` (e.g. `review.*`), or `*` for everything. Empty means all."""
    patterns = list(patterns)
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
