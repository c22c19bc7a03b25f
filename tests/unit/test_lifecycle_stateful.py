"""Hypothesis drives the review lifecycle with random facts and requests: no forbidden state is reached."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.strategy_engine.lifecycle import (
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    ApprovalDecision,
    ReviewFacts,
    ReviewState,
    check,
)

S = ReviewState


class ReviewMachine(RuleBasedStateMachine):
    """Models a review: facts change (owner, assessment, approvals, documents), transitions are requested."""

    def __init__(self) -> None:
        super().__init__()
        self.state = INITIAL
        self.facts = ReviewFacts()
        self.history: list[tuple[ReviewState, ReviewState, ReviewFacts]] = []

    @rule(owner=st.sampled_from([None, "cio"]))
    def assign(self, owner: str | None) -> None:
        self.facts = replace(self.facts, owner=owner)

    @rule(complete=st.booleans() | st.just(True), recommendation=st.booleans() | st.just(True))
    def assess(self, complete: bool, recommendation: bool) -> None:
        # A new assessment version invalidates earlier approvals.
        self.facts = replace(
            self.facts,
            assessment_complete=complete,
            has_recommendation=recommendation,
            assessment_missing=() if complete else ("impact on plans is not rated",),
            approvals_complete=False,
            decision=ApprovalDecision.PENDING,
        )

    @rule(decision=st.sampled_from([*ApprovalDecision, ApprovalDecision.APPROVED]))
    def approve(self, decision: ApprovalDecision) -> None:
        self.facts = replace(self.facts, approvals_complete=decision is ApprovalDecision.APPROVED, decision=decision)

    @rule(published=st.integers(min_value=0, max_value=2), reason=st.sampled_from([None, None, "superseded"]))
    def documents(self, published: int, reason: str | None) -> None:
        self.facts = replace(self.facts, documents_published_in_phase=published, reason=reason)

    @precondition(lambda self: self.state not in TERMINAL)
    @rule(to=st.sampled_from(list(ReviewState)))
    def request_any(self, to: ReviewState) -> None:
        self._request(to)

    @precondition(lambda self: self.state not in TERMINAL)
    @rule(data=st.data())
    def request_next(self, data: st.DataObject) -> None:
        """Mostly forward moves, so the walk gets through the whole cycle, not just its first steps."""
        options: list[ReviewState] = sorted(
            to for (frm, to) in TRANSITIONS if frm == self.state and to is not S.CANCELLED
        )
        self._request(data.draw(st.sampled_from(options or [S.CANCELLED])))

    def _request(self, target: ReviewState) -> None:
        refusal = check(self.state, target, self.facts)
        if refusal is None:
            self.history.append((self.state, target, self.facts))
            self.state = target
            event(f"reached {target.value}")
            if target is not S.CANCELLED:  # a new phase: documents published "in this phase" start at zero
                self.facts = replace(self.facts, documents_published_in_phase=0)
        else:
            assert refusal.guard

    @invariant()
    def every_step_was_allowed_and_guarded(self) -> None:
        for current, target, facts in self.history:
            assert (current, target) in TRANSITIONS
            assert target is not S.MERGED  # only the merge operation may merge
            if (current, target) == (S.TRIAGE, S.ASSESS):
                assert facts.owner
            if (current, target) in {(S.ASSESS, S.GENERATE), (S.GENERATE, S.APPROVAL)}:
                assert facts.assessment_complete
            if (current, target) == (S.GENERATE, S.APPROVAL):
                assert facts.has_recommendation
            if (current, target) == (S.APPROVAL, S.PUBLISH):
                assert facts.approvals_complete
                assert facts.decision is ApprovalDecision.APPROVED
            if (current, target) == (S.PUBLISH, S.EXECUTE):
                assert facts.documents_published_in_phase > 0
            if target is S.CANCELLED:
                assert facts.reason

    @invariant()
    def terminal_is_final(self) -> None:
        states = [target for _, target, _ in self.history]
        for index, state in enumerate(states):
            if state in TERMINAL:
                assert index == len(states) - 1


ReviewMachine.TestCase.settings = settings(max_examples=500, stateful_step_count=60, deadline=None)
TestReviewLifecycle = ReviewMachine.TestCase
