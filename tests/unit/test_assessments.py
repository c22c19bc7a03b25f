"""Assessment completeness, risk and approval decisions; document status order (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.strategy_engine.assessments import (
    Approvers,
    AssessmentIn,
    Verdict,
    asked,
    decision,
    missing,
    names_approver,
)
from services.strategy_engine.documents import Status, may_move

IMPACT = {"rating": "medium", "statement": "s"}
COMPLETE: dict[str, Any] = {
    "constraints": [
        {
            "title": "budget",
            "type": "financial",
            "severity": "high",
            "mitigation": {"action": "phase it", "owner": "cfo"},
        },
        {"title": "skills", "type": "organisational", "severity": "low", "accepted_rationale": "hire later"},
    ],
    "impact": {"perspective": IMPACT, "position": IMPACT, "plans": IMPACT, "patterns": IMPACT},
    "risk": {"likelihood": 4, "impact": 5, "treatment": "mitigate"},
}


def test_a_complete_assessment_has_nothing_missing_and_a_risk_score() -> None:
    assessment = AssessmentIn.model_validate(COMPLETE)
    assert missing(assessment) == []
    assert assessment.risk is not None
    assert assessment.risk.score == 20


def test_gaps_are_named() -> None:
    data = {
        **COMPLETE,
        "constraints": [{"title": "vendor lock-in", "type": "contractual", "severity": "high"}],
        "impact": {"perspective": IMPACT},
        "risk": None,
    }
    gaps = missing(AssessmentIn.model_validate(data))
    assert gaps == [
        "constraint 'vendor lock-in' is neither mitigated nor accepted",
        "impact on position is not rated",
        "impact on plans is not rated",
        "impact on patterns is not rated",
        "no risk score (likelihood x impact)",
    ]


def test_risk_is_bounded() -> None:
    with pytest.raises(ValidationError):
        AssessmentIn.model_validate({"risk": {"likelihood": 6, "impact": 1, "treatment": "accept"}})


A, R, D = Verdict.APPROVE, Verdict.REJECT, Verdict.DEFER
QUORUM = Approvers(mode="quorum", names=["cio", "cfo", "ciso"], required=2)
SEQUENCE = Approvers(mode="sequence", names=["owner", "cio"])


@pytest.mark.parametrize(
    ("approvers", "verdicts", "expected"),
    [
        (None, [], "pending"),
        (QUORUM, [("cio", A)], "pending"),
        (QUORUM, [("cio", A), ("cfo", A)], "approved"),
        (QUORUM, [("cio", A), ("stranger", A)], "pending"),
        (QUORUM, [("cio", A), ("cfo", R)], "rejected"),
        (QUORUM, [("cio", D)], "deferred"),
        (SEQUENCE, [("owner", A)], "pending"),
        (SEQUENCE, [("owner", A), ("cio", A)], "approved"),
        (SEQUENCE, [("cio", A), ("owner", A)], "pending"),
    ],
)
def test_decisions(approvers: Approvers | None, verdicts: list[tuple[str, Verdict]], expected: str) -> None:
    assert decision(approvers, verdicts)[0] == expected


def test_quorum_cannot_exceed_the_approvers() -> None:
    with pytest.raises(ValidationError):
        Approvers(mode="quorum", names=["a"], required=2)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (Status.DRAFT, Status.IN_REVIEW, True),
        (Status.IN_REVIEW, Status.APPROVED, True),
        (Status.IN_REVIEW, Status.DRAFT, True),
        (Status.APPROVED, Status.PUBLISHED, True),
        (Status.DRAFT, Status.PUBLISHED, False),
        (Status.PUBLISHED, Status.DRAFT, False),
        (Status.SUPERSEDED, Status.PUBLISHED, False),
        (Status.PUBLISHED, Status.SUPERSEDED, False),
    ],
)
def test_document_status_order(current: Status, target: Status, allowed: bool) -> None:
    assert may_move(current, target) is allowed


def test_an_assessment_names_an_approver_by_e_mail_address_only() -> None:
    named = AssessmentIn.model_validate({"approvers": {"names": ["CIO@corp.example ", "cfo@corp.example"]}})
    assert names_approver(named, "cio@corp.example")
    assert names_approver(named, "Cfo@Corp.Example")
    assert not names_approver(named, "o@corp.example")  # a part of an address is no address
    assert not names_approver(AssessmentIn(), "cio@corp.example")


@pytest.mark.parametrize(
    ("mode", "verdicts", "expected"),
    [
        ("quorum", [], ["a@x.org", "b@x.org", "c@x.org"]),
        ("quorum", [("b@x.org", Verdict.APPROVE)], ["a@x.org", "c@x.org"]),
        ("sequence", [], ["a@x.org"]),  # one at a time: the others are asked when their turn comes
        ("sequence", [("a@x.org", Verdict.APPROVE)], ["b@x.org"]),
        ("sequence", [("a@x.org", Verdict.APPROVE), ("b@x.org", Verdict.APPROVE)], ["c@x.org"]),
        ("sequence", [(n, Verdict.APPROVE) for n in ("a@x.org", "b@x.org", "c@x.org")], []),
    ],
)
def test_asked_is_whose_verdict_is_awaited_now(
    mode: str, verdicts: list[tuple[str, Verdict]], expected: list[str]
) -> None:
    approvers = Approvers.model_validate({"mode": mode, "names": ["a@x.org", "b@x.org", "c@x.org"], "required": 2})
    assert asked(approvers, verdicts) == expected


def test_nobody_is_asked_without_approvers() -> None:
    assert asked(None, []) == []
