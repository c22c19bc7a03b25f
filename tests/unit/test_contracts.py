"""The TriggerAccepted contract refuses what the engine could not store or compute with."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.contracts.accepted import TriggerAcceptedV1

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
        {"occurred_at": "0403-01-01T00:00:00Z"},
        {"received_at": "2026-01-01T00:00:00"},
        {"trace_id": "not-hex"},
    ],
)
def test_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TriggerAcceptedV1.model_validate({**VALID, **change})
