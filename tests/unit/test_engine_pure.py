"""Correlation keys and review states: pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.triggers import Category, Severity
from services.strategy_engine.lifecycle import ReviewState, is_open
from services.strategy_engine.policies import CORRELATION_TEMPLATES, correlation_key

T = datetime(2026, 11, 22, tzinfo=UTC)


def accepted(category: Category, data: dict[str, Any], subject: str = "bu-1") -> TriggerAcceptedV1:
    return TriggerAcceptedV1(
        source="/s",
        id="1",
        type=f"smits.trigger.{category.value}.v1",
        category=category,
        severity=Severity.HIGH,
        subject=subject,
        occurred_at=T,
        received_at=T,
        data=data,
    )


def test_same_regulation_correlates_across_scopes() -> None:
    a = accepted(Category.REGULATION_UPDATE, {"regulation_id": "DORA"}, subject="bu-1")
    b = accepted(Category.REGULATION_UPDATE, {"regulation_id": "DORA"}, subject="bu-2")
    assert correlation_key(a) == correlation_key(b) == "regulation:DORA"


def test_customer_feedback_correlates_by_scope() -> None:
    assert correlation_key(accepted(Category.CUSTOMER_FEEDBACK, {}, subject="svc-mail")) == "feedback:svc-mail"


def test_every_category_has_a_template() -> None:
    assert set(CORRELATION_TEMPLATES) == set(Category)


@pytest.mark.parametrize("state", list(ReviewState))
def test_only_closed_cancelled_and_merged_are_not_open(state: ReviewState) -> None:
    assert is_open(state) is (state not in {ReviewState.CLOSED, ReviewState.CANCELLED, ReviewState.MERGED})
