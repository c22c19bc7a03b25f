"""Which subscriptions want an event (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.contracts.reviews import ReviewEventV1


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


def _allowed(values: Sequence[str], value: str | None) -> bool:
    return not values or value in values


def wants(
    *,
    event_types: Sequence[str],
    categories: Sequence[str],
    severities: Sequence[str],
    scopes: Sequence[str],
    event: ReviewEventV1,
    cleared: bool = True,
) -> bool:
    """A subscription wants an event when its type and every non-empty filter match. A subscription not
    `cleared` for restricted data cannot select a restricted review's events by scope (a scope filter would
    tell it which subject the hidden review is about): a non-empty scope filter never matches them."""
    hidden_scope = event.restricted and not cleared
    return (
        type_matches(event_types, event.type.value)
        and _allowed(categories, event.category)
        and _allowed(severities, event.severity)
        and (not scopes if hidden_scope else _allowed(scopes, event.scope))
    )
