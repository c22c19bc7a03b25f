"""The PDCA state machine, table-driven: every transition, every guard (pure, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.strategy_engine.lifecycle import (
    PHASES,
    TERMINAL,
    TRANSITIONS,
    ApprovalDecision,
    ReviewFacts,
    ReviewState,
    check,
    is_overdue,
    next_steps,
)

S = ReviewState
ALL_GOOD = ReviewFacts(
    owner="cio",
    assessment_complete=True,
    assessment_missing=(),
    has_recommendation=True,
    approvals_complete=True,
    approvals_missing="",
    decision=ApprovalDecision.APPROVED,
    documents_published_in_phase=1,
    reason="duplicate of another",
)

EXPECTED = {
    (S.TRIAGE, S.ASSESS),
    (S.ASSESS, S.GENERATE),
    (S.GENERATE, S.APPROVAL),
    (S.APPROVAL, S.PUBLISH),
    (S.APPROVAL, S.GENERATE),
    (S.APPROVAL, S.ASSESS),
    (S.PUBLISH, S.EXECUTE),
    (S.EXECUTE, S.MONITOR),
    (S.MONITOR, S.ADJUST),
    (S.MONITOR, S.CLOSED),
    (S.ADJUST, S.ASSESS),
    *((phase, S.CANCELLED) for phase in PHASES),
}


def test_the_transition_table_is_exactly_the_pdca_cycle() -> None:
    assert set(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED))
def test_every_transition_passes_when_its_guards_hold(current: ReviewState, target: ReviewState) -> None:
    assert check(current, target, ALL_GOOD) is None


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in ReviewState for b in ReviewState if (a, b) not in EXPECTED],
)
def test_everything_else_is_refused_as_not_a_transition(current: ReviewState, target: ReviewState) -> None:
    refusal = check(current, target, ALL_GOOD)
    assert refusal is not None
    assert refusal.guard == "allowed_transition"


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_go_nowhere(state: ReviewState) -> None:
    assert all(check(state, target, ALL_GOOD) is not None for target in ReviewState)


GUARDS = [
    (S.TRIAGE, S.ASSESS, {"owner": None}, "owner_assigned"),
    (
        S.ASSESS,
        S.GENERATE,
        {"assessment_complete": False, "assessment_missing": ("impact on plans is not rated",)},
        "assessment_complete",
    ),
    (S.GENERATE, S.APPROVAL, {"assessment_complete": False}, "assessment_complete"),
    (S.GENERATE, S.APPROVAL, {"has_recommendation": False}, "recommendation_present"),
    (
        S.APPROVAL,
        S.PUBLISH,
        {"approvals_complete": False, "approvals_missing": "1 of 2 required approvals"},
        "approvals_complete",
    ),
    (S.APPROVAL, S.PUBLISH, {"decision": ApprovalDecision.REJECTED}, "decision_approved"),
    (S.PUBLISH, S.EXECUTE, {"documents_published_in_phase": 0}, "documents_published"),
    (S.ASSESS, S.CANCELLED, {"reason": None}, "reason_given"),
]


@pytest.mark.parametrize(("current", "target", "broken", "guard"), GUARDS)
def test_each_guard_refuses_with_its_name(
    current: ReviewState, target: ReviewState, broken: dict[str, object], guard: str
) -> None:
    from dataclasses import replace

    refusal = check(current, target, replace(ALL_GOOD, **broken))  # type: ignore[arg-type]
    assert refusal is not None
    assert refusal.guard == guard
    assert refusal.detail


def test_the_guard_detail_lists_what_is_missing() -> None:
    from dataclasses import replace

    facts = replace(ALL_GOOD, assessment_complete=False, assessment_missing=("a", "b"))
    refusal = check(S.ASSESS, S.GENERATE, facts)
    assert refusal is not None
    assert refusal.detail == "a; b"


@pytest.mark.parametrize("state", list(ReviewState))
def test_next_steps_are_the_states_the_table_leads_to_each_checked(state: ReviewState) -> None:
    steps = next_steps(state, ALL_GOOD)
    assert [target for target, _ in steps] == [b for (a, b) in TRANSITIONS if a == state]
    assert {(state, target) for target, _ in steps} == {(a, b) for (a, b) in EXPECTED if a == state}
    assert all(refusal is None for _, refusal in steps)


def test_next_steps_carry_the_first_refusal_of_each_blocked_transition() -> None:
    steps = dict(next_steps(S.TRIAGE, ReviewFacts()))
    assess, cancel = steps[S.ASSESS], steps[S.CANCELLED]
    assert set(steps) == {S.ASSESS, S.CANCELLED}
    assert assess == check(S.TRIAGE, S.ASSESS, ReviewFacts())
    assert assess is not None
    assert (assess.guard, assess.detail) == ("owner_assigned", "triage needs an owner before assessment")
    assert cancel is not None
    assert cancel.guard == "reason_given"
    approval = dict(next_steps(S.APPROVAL, ReviewFacts(approvals_missing="1 of 2 required approvals")))
    publish = approval[S.PUBLISH]
    assert publish is not None
    assert publish.detail == "1 of 2 required approvals"
    assert approval[S.GENERATE] is None  # rework is always open


def test_a_review_is_overdue_while_open_past_its_due_date() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    assert is_overdue(S.ASSESS, now - timedelta(seconds=1), now)
    assert not is_overdue(S.ASSESS, now, now)
    assert not is_overdue(S.ASSESS, None, now)
    assert not any(is_overdue(state, now - timedelta(days=1), now) for state in TERMINAL)
