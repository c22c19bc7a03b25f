"""The TriggerAccepted contract refuses what the engine could not store or compute with."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.contracts.accepted import TriggerAcceptedV1, _no_nul_inside, _no_nul_inside_slowly

VALID: dict[str, Any] = {
    "source": "/s",
    "id": "1",
    "type": "smits.trigger.goal_change.v1",
    "category": "goal_change",
    "severity": "low",
    "subject": "bu",
    "occurred_at": "2026-01-01T00:00:00Z",
    "received_at": "2026-01-01T00:00:00Z",
    "data": {"n": 36893488147419103233},
}


def test_a_valid_event_passes_even_with_a_big_integer_in_data() -> None:
    assert TriggerAcceptedV1.model_validate(VALID).data["n"] == 36893488147419103233


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "b\x00u"},
        {"id": "x" * 501},
        {"data": {"k": "v\x00"}},
        {"data": {"k\x00": 1}},
        {"data": {"n": 2**70, "k": ["\x00"]}},  # too big for orjson: the stdlib looks for NUL
        {"data": {"k": "\ud800"}},
        {"occurred_at": "0403-01-01T00:00:00Z"},
        {"received_at": "2026-01-01T00:00:00"},
        {"trace_id": "not-hex"},
    ],
)
def test_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TriggerAcceptedV1.model_validate({**VALID, **change})


TEXT = st.text() | st.text(st.sampled_from("a\x00\ud800\\u0é"), max_size=8)
"""Any text, and text made of what matters: NUL, a lone surrogate, a backslash before `u0`."""
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(TEXT, JSON, max_size=6))
def test_data_is_refused_exactly_when_the_stdlib_finds_nul_or_a_lone_surrogate(data: dict[str, Any]) -> None:
    try:
        _no_nul_inside_slowly(data)
        expected = None
    except ValueError as exc:
        expected = str(exc)
    try:
        _no_nul_inside(data)
        found = None
    except ValueError as exc:
        found = str(exc)
    assert found == expected
