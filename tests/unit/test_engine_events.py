"""Review events are encoded once, without building the pydantic model: the bytes must be the model's own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.strategy_engine.flows.events import event_rows
from services.strategy_engine.lifecycle import ReviewState


@dataclass(kw_only=True)
class _Review:
    id: uuid.UUID
    category: str
    severity: str
    scope: str | None
    restricted: bool
    event_sequence: int = 0


def _model(review: _Review, timeline: dict[str, Any], type_: ReviewEventType, data: dict[str, Any]) -> bytes:
    """What the engine published before: the validated model, dumped to JSON, encoded by orjson."""
    event = ReviewEventV1(
        id=timeline["id"],
        type=type_,
        review_id=review.id,
        sequence=timeline["sequence"],
        occurred_at=timeline["occurred_at"],
        data={"review_id": str(review.id), **data},
        category=review.category,
        severity=review.severity,
        scope=review.scope,
        restricted=review.restricted,
    )
    return orjson.dumps(event.model_dump(mode="json"))


def _check(review: _Review, data: dict[str, Any], now: datetime) -> None:
    type_ = ReviewEventType.TRIGGER_ATTACHED
    timeline, outbox = event_rows(review, type_, now, data, traceparent=None)
    assert outbox.value == _model(review, timeline, type_, data)
    # the timeline stores the very bytes the event embeds as its data
    assert orjson.loads(outbox.value)["data"] == orjson.loads(orjson.dumps(timeline["data"]))


NOW = datetime(2026, 11, 24, 7, 30, 1, 250, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"title": "DORA", "due_at": None, "trigger": {"source": "/s", "id": "1", "subject": "bu-€"}},
        {"approvers": ["a@x.org", "b@x.org"], "complete": True, "version": 3, "risk": 0.25},
        {
            "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "local": datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=2))),
        },
        {"id": uuid.UUID(int=7), "state": ReviewState.APPROVAL, "amount": Decimal("1.50"), "tags": frozenset({"x"})},
    ],
    ids=["empty", "strings", "numbers", "times", "python-values"],
)
@pytest.mark.parametrize("restricted", [False, True])
def test_an_event_is_the_bytes_the_model_gives(data: dict[str, Any], restricted: bool) -> None:
    review = _Review(id=uuid.uuid4(), category="merger_acquisition", severity="high", scope=None, restricted=restricted)
    _check(review, data, NOW)
    _check(review, data, NOW.replace(microsecond=0))  # no fraction
    assert review.event_sequence == 2  # each event advances the review's sequence


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), JSON, max_size=6), st.text(), st.booleans())
def test_any_json_data_encodes_as_the_model_does(data: dict[str, Any], scope: str, restricted: bool) -> None:
    review = _Review(id=uuid.uuid4(), category="c", severity="low", scope=scope, restricted=restricted)
    _check(review, data, NOW)
