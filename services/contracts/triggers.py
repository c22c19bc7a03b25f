"""Trigger categories v1: the `data` of a `smits.trigger.<category>.v1` CloudEvent.

One pydantic model per category; `TriggerDataV1` discriminates them on the CloudEvent `type`.
Unknown fields are refused so a producer's typo surfaces as a dead letter, not silent loss.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema

TYPE_PREFIX = "smits.trigger."
TYPE_SUFFIX = ".v1"


class Category(StrEnum):
    MERGER_ACQUISITION = "merger_acquisition"
    BUDGET_CHANGE = "budget_change"
    REGULATION_UPDATE = "regulation_update"
    AUDIT_FINDING = "audit_finding"
    CUSTOMER_FEEDBACK = "customer_feedback"
    VENDOR_STRATEGY_CHANGE = "vendor_strategy_change"
    BUSINESS_OPPORTUNITY = "business_opportunity"
    GOAL_CHANGE = "goal_change"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def event_type(category: Category) -> str:
    return f"{TYPE_PREFIX}{category.value}{TYPE_SUFFIX}"


Text = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*$")]
"""No NUL: PostgreSQL text and JSON cannot hold it (the pattern puts that in the published schema too)."""
Names = Annotated[list[Text], Field(max_length=200)]

DECIMAL_LIMIT = 10**15
_DECIMAL_TEXT = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,12})?$"
_DECIMAL_TEXT_RE = re.compile(_DECIMAL_TEXT.replace("$", r"\Z"))


def _decimal_text(value: object) -> object:
    """A decimal given as a string must be plain (`-1234.50`): no exponent, sign, blanks or digit separators."""
    if isinstance(value, str) and not _DECIMAL_TEXT_RE.match(value):
        raise ValueError("must be a plain decimal such as -1234.50 (at most 15 integer and 12 fractional digits)")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(ge=-DECIMAL_LIMIT, le=DECIMAL_LIMIT, allow_inf_nan=False),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": -DECIMAL_LIMIT, "maximum": DECIMAL_LIMIT},
                {"type": "string", "pattern": _DECIMAL_TEXT},
            ]
        }
    ),
]
"""A decimal as a JSON number or a plain decimal string, within ±10^15: what ingest accepts is what the schema says."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MergerAcquisitionV1(_Data):
    type: Literal["smits.trigger.merger_acquisition.v1"] = "smits.trigger.merger_acquisition.v1"
    deal_id: Text
    deal_type: Literal["merger", "acquisition", "divestiture", "joint_venture"]
    counterparty: Text
    announced_on: date
    expected_close_on: date | None = None
    affected_business_units: Names = []


class RegulationUpdateV1(_Data):
    type: Literal["smits.trigger.regulation_update.v1"] = "smits.trigger.regulation_update.v1"
    regulation_id: Text
    title: Text
    jurisdiction: Text
    issuing_body: Text
    change_type: Literal["new", "amendment", "repeal", "guidance"]
    effective_date: date
    compliance_deadline: date | None = None


class AuditFindingV1(_Data):
    type: Literal["smits.trigger.audit_finding.v1"] = "smits.trigger.audit_finding.v1"
    finding_id: Text
    engagement_id: Text
    origin: Literal["internal", "external"]
    finding_severity: Severity
    control_ref: Text | None = None
    remediation_due: date | None = None


class BudgetChangeV1(_Data):
    type: Literal["smits.trigger.budget_change.v1"] = "smits.trigger.budget_change.v1"
    budget_id: Text
    fiscal_period: Text
    cost_centres: Names = []
    delta_amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    delta_percent: Amount


class VendorStrategyChangeV1(_Data):
    type: Literal["smits.trigger.vendor_strategy_change.v1"] = "smits.trigger.vendor_strategy_change.v1"
    vendor: Text
    product: Text
    change_type: Literal["end_of_life", "pricing", "licensing", "roadmap", "vendor_m_and_a"]
    effective_date: date | None = None
    affected_services: Names = []
    critical_service_affected: bool = False


class BusinessOpportunityV1(_Data):
    type: Literal["smits.trigger.business_opportunity.v1"] = "smits.trigger.business_opportunity.v1"
    opportunity_id: Text
    sponsor: Text
    market_space: Text
    estimated_value: Amount | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    decision_deadline: date | None = None


class GoalChangeV1(_Data):
    type: Literal["smits.trigger.goal_change.v1"] = "smits.trigger.goal_change.v1"
    objective_id: Text
    period: Text
    old_target: Text | None = None
    new_target: Text
    owner: Text


class CustomerFeedbackV1(_Data):
    type: Literal["smits.trigger.customer_feedback.v1"] = "smits.trigger.customer_feedback.v1"
    customer: Text
    services: Names = []
    channel: Literal["survey", "complaint", "review_meeting", "support", "other"]
    metric: Literal["csat", "nps"]
    value: Amount
    theme: Text | None = None


TriggerDataV1 = Annotated[
    MergerAcquisitionV1
    | RegulationUpdateV1
    | AuditFindingV1
    | BudgetChangeV1
    | VendorStrategyChangeV1
    | BusinessOpportunityV1
    | GoalChangeV1
    | CustomerFeedbackV1,
    Field(discriminator="type"),
]
"""The `data` of a trigger, tagged with its CloudEvent `type` so pydantic picks the model."""

TRIGGER_DATA: TypeAdapter[TriggerDataV1] = TypeAdapter(TriggerDataV1)

MODELS_BY_CATEGORY: dict[Category, type[_Data]] = {
    Category.MERGER_ACQUISITION: MergerAcquisitionV1,
    Category.BUDGET_CHANGE: BudgetChangeV1,
    Category.REGULATION_UPDATE: RegulationUpdateV1,
    Category.AUDIT_FINDING: AuditFindingV1,
    Category.CUSTOMER_FEEDBACK: CustomerFeedbackV1,
    Category.VENDOR_STRATEGY_CHANGE: VendorStrategyChangeV1,
    Category.BUSINESS_OPPORTUNITY: BusinessOpportunityV1,
    Category.GOAL_CHANGE: GoalChangeV1,
}


_CATEGORY_OF_TYPE = {event_type(category): category for category in Category}


def category_of(type_: str) -> Category | None:
    """The category named by a CloudEvent `type`, or None when the type is not a v1 trigger."""
    return _CATEGORY_OF_TYPE.get(type_)
