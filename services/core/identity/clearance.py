"""Need-to-know (pure): who may see restricted data, shared by the services.

Restricted data carries a clearance list of grant tokens (`principal:<email>`, `role:<role>`, `unit:<org
unit>`, or `*`): an engine policy's `restricted_to` for the reviews it opens, ingest's
`SMITS_INGEST_RESTRICTED_TO` for triggers of its restricted categories. A caller sees it when one of its
grants (`Caller.grants`) is on the list, or when it holds `*` (cleared for all restricted data). The engine's
`persistence.visible_to` states the same rule in SQL; a property test holds the two together."""

from __future__ import annotations

from collections.abc import Collection

from services.core.identity.model import Role, normal_email

ALL = "*"
"""The grant of a principal cleared for all restricted data."""
GRANT_PATTERN = rf"^(\*|principal:\S+@\S+|role:({'|'.join(role.value for role in Role)})|unit:\S.*)$"


def normal_grant(token: str) -> str:
    """A grant as callers hold it: e-mail addresses compare case-insensitively."""
    kind, _, value = token.partition(":")
    return f"principal:{normal_email(value)}" if kind == "principal" else token


def visible(grants: Collection[str], *, restricted: bool, clearance: Collection[str]) -> bool:
    """Whether a caller holding `grants` sees a review (restricted or not) with this clearance list."""
    return not restricted or ALL in grants or not set(grants).isdisjoint(clearance)
