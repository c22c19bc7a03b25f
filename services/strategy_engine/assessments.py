"""Assessments: structured, versioned, approved by quorum or in sequence (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.core.identity.model import normal_email
from services.strategy_engine.lifecycle import ApprovalDecision

Text = Annotated[str, Field(min_length=1, max_length=4000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
MAX_APPROVERS = 50


class Rating(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Opportunity(_Model):
    title: Name
    description: Text | None = None


class Mitigation(_Model):
    action: Text
    owner: Name


class Constraint(_Model):
    """Either mitigated (action and owner) or accepted with a rationale; neither means unresolved."""

    title: Name
    type: Literal["financial", "regulatory", "technical", "organisational", "contractual", "market", "other"]
    severity: Literal["low", "medium", "high", "critical"]
    mitigation: Mitigation | None = None
    accepted_rationale: Text | None = None

    @property
    def resolved(self) -> bool:
        return self.mitigation is not None or self.accepted_rationale is not None


class Impact(_Model):
    rating: Rating
    statement: Text


class FourPs(_Model):
    perspective: Impact | None = None
    position: Impact | None = None
    plans: Impact | None = None
    patterns: Impact | None = None


class Risk(_Model):
    likelihood: Annotated[int, Field(ge=1, le=5)]
    impact: Annotated[int, Field(ge=1, le=5)]
    treatment: Literal["avoid", "mitigate", "transfer", "accept"]

    @property
    def score(self) -> int:
        return self.likelihood * self.impact


class Money(_Model):
    amount: Decimal
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Recommendation(_Model):
    summary: Text
    alternatives: list[Text] = []


class Approvers(_Model):
    """`quorum`: any `required` of `names`; `sequence`: every name, in the listed order."""

    mode: Literal["quorum", "sequence"] = "quorum"
    names: Annotated[list[Name], Field(min_length=1, max_length=MAX_APPROVERS)]
    required: Annotated[int, Field(ge=1, le=MAX_APPROVERS)] = 1

    @model_validator(mode="after")
    def _fits(self) -> Approvers:
        if self.mode == "quorum" and self.required > len(self.names):
            raise ValueError("required exceeds the number of approvers")
        return self


class AssessmentIn(_Model):
    internal_analysis: Text | None = None
    external_analysis: Text | None = None
    opportunities: list[Opportunity] = []
    constraints: list[Constraint] = []
    impact: FourPs = FourPs()
    affected_services: list[Name] = []
    affected_business_units: list[Name] = []
    financial_impact: Money | None = None
    risk: Risk | None = None
    recommendation: Recommendation | None = None
    approvers: Approvers | None = None


def missing(assessment: AssessmentIn) -> list[str]:
    """What keeps an assessment from being complete (DOMAIN.md): empty means complete."""
    gaps = [
        f"constraint '{c.title}' is neither mitigated nor accepted" for c in assessment.constraints if not c.resolved
    ]
    for name in ("perspective", "position", "plans", "patterns"):
        if getattr(assessment.impact, name) is None:
            gaps.append(f"impact on {name} is not rated")
    if assessment.risk is None:
        gaps.append("no risk score (likelihood x impact)")
    return gaps


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    DEFER = "defer"


def decision(
    approvers: Approvers | None, verdicts: Sequence[tuple[str, Verdict]]
) -> tuple[ApprovalDecision, str | None]:
    """The decision and what is still missing, from verdicts in arrival order."""
    if approvers is None:
        return ApprovalDecision.PENDING, "the assessment names no approvers"
    given = [(name, verdict) for name, verdict in verdicts if name in approvers.names]
    if any(verdict is Verdict.REJECT for _, verdict in given):
        return ApprovalDecision.REJECTED, None
    if any(verdict is Verdict.DEFER for _, verdict in given):
        return ApprovalDecision.DEFERRED, None
    approved = [name for name, verdict in given if verdict is Verdict.APPROVE]
    if approvers.mode == "sequence":
        if approved != approvers.names[: len(approved)]:
            return ApprovalDecision.PENDING, "approvals arrived out of sequence"
        if len(approved) < len(approvers.names):
            return ApprovalDecision.PENDING, f"waiting for {approvers.names[len(approved)]}"
        return ApprovalDecision.APPROVED, None
    if len(set(approved)) >= approvers.required:
        return ApprovalDecision.APPROVED, None
    return ApprovalDecision.PENDING, f"{len(set(approved))} of {approvers.required} required approvals"


def next_in_sequence(approvers: Approvers, approved: Sequence[str]) -> str | None:
    remaining = [name for name in approvers.names if name not in approved]
    return remaining[0] if remaining else None


def asked(approvers: Approvers | None, verdicts: Sequence[tuple[str, Verdict]]) -> list[str]:
    """Whose verdict is awaited now: in `sequence`, the next in line (one at a time); in `quorum`, every named
    approver who has given none."""
    if approvers is None:
        return []
    given = {name for name, _ in verdicts}
    if approvers.mode == "sequence":
        approved = [name for name, verdict in verdicts if verdict is Verdict.APPROVE]
        after = next_in_sequence(approvers, approved)
        return [after] if after is not None and after not in given else []
    return [name for name in approvers.names if name not in given]


def names_approver(assessment: AssessmentIn, email: str) -> bool:
    """Whether the assessment names the person `email` among its approvers (compared as e-mail addresses)."""
    approvers = assessment.approvers.names if assessment.approvers else []
    return normal_email(email) in {normal_email(name) for name in approvers}
