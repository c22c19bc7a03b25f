"""Which review a trigger belongs to (pure). Default correlation keys per category."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.triggers import Category

CORRELATION_TEMPLATES: Mapping[Category, str] = {
    Category.MERGER_ACQUISITION: "deal:{data[deal_id]}",
    Category.REGULATION_UPDATE: "regulation:{data[regulation_id]}",
    Category.AUDIT_FINDING: "audit:{data[engagement_id]}",
    Category.BUDGET_CHANGE: "budget:{data[budget_id]}:{data[fiscal_period]}",
    Category.VENDOR_STRATEGY_CHANGE: "vendor:{data[vendor]}:{data[product]}",
    Category.BUSINESS_OPPORTUNITY: "opportunity:{data[opportunity_id]}",
    Category.GOAL_CHANGE: "goal:{data[objective_id]}:{data[period]}",
    Category.CUSTOMER_FEEDBACK: "feedback:{subject}",
}
"""Related triggers (same deal, same regulation, same scope) share a key and so one open review."""

TRIAGE_DUE = timedelta(days=2)


def correlation_key(trigger: TriggerAcceptedV1) -> str:
    fields: dict[str, Any] = {"category": trigger.category.value, "subject": trigger.subject, "data": trigger.data}
    return CORRELATION_TEMPLATES[trigger.category].format_map(fields)
