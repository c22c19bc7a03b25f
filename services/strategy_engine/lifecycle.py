"""The review cycle (PDCA) as pure code: states, allowed transitions and their guards.

Plan: triage → assess → generate → approval. Do: publish → execute. Check: monitor. Act: adjust → assess,
or closed. Any open state can be cancelled; merging is its own operation (`merge`), never a transition.
A guard reads only `ReviewFacts`, a snapshot the caller builds, so this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ReviewState(StrEnum):
    TRIAGE = "triage"
    ASSESS = "assess"
    GENERATE = "generate"
    APPROVAL = "approval"
    PUBLISH = "publish"
    EXECUTE = "execute"
    MONITOR = "monitor"
    ADJUST = "adjust"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    MERGED = "merged"


class ApprovalDecision(StrEnum):
    """Where the approvals of a review's current assessment stand."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEFERRED = "deferred"


TERMINAL = frozenset({ReviewState.CLOSED, ReviewState.CANCELLED, ReviewState.MERGED})
INITIAL = ReviewState.TRIAGE
PHASES = tuple(state for state in ReviewState if state not in TERMINAL)


@dataclass(kw_only=True, frozen=True, slots=True)
class ReviewFacts:
    """What the guards may look at, taken in the same transaction as the transition."""

    owner: str | None = None
    assessment_complete: bool = False
    assessment_missing: tuple[str, ...] = ("no assessment recorded",)
    has_recommendation: bool = False
    approvals_complete: bool = False
    approvals_missing: str = "no assessment to approve"
    decision: ApprovalDecision = ApprovalDecision.PENDING
    documents_published_in_phase: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    guard: str
    detail: str


Guard = Callable[[ReviewFacts], Refusal | None]


def _owner_assigned(facts: ReviewFacts) -> Refusal | None:
    return None if facts.owner else Refusal("owner_assigned", "triage needs an owner before assessment")


def _assessment_complete(facts: ReviewFacts) -> Refusal | None:
    if facts.assessment_complete:
        return None
    return Refusal("assessment_complete", "; ".join(facts.assessment_missing) or "assessment incomplete")


def _recommendation_present(facts: ReviewFacts) -> Refusal | None:
    if facts.has_recommendation:
        return None
    return Refusal("recommendation_present", "the current assessment has no recommendation")


def _approved(facts: ReviewFacts) -> Refusal | None:
    if not facts.approvals_complete:
        return Refusal("approvals_complete", facts.approvals_missing)
    if facts.decision != ApprovalDecision.APPROVED:
        return Refusal("decision_approved", f"the decision is {facts.decision}, not approved")
    return None


def _documents_published(facts: ReviewFacts) -> Refusal | None:
    if facts.documents_published_in_phase > 0:
        return None
    return Refusal("documents_published", "publish at least one new document version during this phase")


def _reason_given(facts: ReviewFacts) -> Refusal | None:
    return None if facts.reason else Refusal("reason_given", "cancelling needs a reason")


S = ReviewState
TRANSITIONS: Mapping[tuple[ReviewState, ReviewState], tuple[Guard, ...]] = {
    (S.TRIAGE, S.ASSESS): (_owner_assigned,),
    (S.ASSESS, S.GENERATE): (_assessment_complete,),
    (S.GENERATE, S.APPROVAL): (_assessment_complete, _recommendation_present),
    (S.APPROVAL, S.PUBLISH): (_approved,),
    (S.APPROVAL, S.GENERATE): (),  # rework
    (S.APPROVAL, S.ASSESS): (),  # rework
    (S.PUBLISH, S.EXECUTE): (_documents_published,),
    (S.EXECUTE, S.MONITOR): (),
    (S.MONITOR, S.ADJUST): (),
    (S.MONITOR, S.CLOSED): (),
    (S.ADJUST, S.ASSESS): (),
    **{(state, S.CANCELLED): (_reason_given,) for state in PHASES},
}


def check(current: ReviewState, target: ReviewState, facts: ReviewFacts) -> Refusal | None:
    """None when `current → target` is allowed and every guard holds; otherwise the first refusal."""
    guards = TRANSITIONS.get((current, target))
    if guards is None:
        allowed = sorted(to.value for (frm, to) in TRANSITIONS if frm == current)
        return Refusal(
            "allowed_transition",
            f"{current.value} → {target.value} is not a transition; "
            f"from {current.value}: {', '.join(allowed) or 'none'}",
        )
    for guard in guards:
        refusal = guard(facts)
        if refusal is not None:
            return refusal
    return None


def is_overdue(state: ReviewState, due_at: datetime | None, now: datetime) -> bool:
    """A review is overdue while it is open past its phase's due date."""
    return due_at is not None and due_at < now and state not in TERMINAL


def next_steps(current: ReviewState, facts: ReviewFacts) -> list[tuple[ReviewState, Refusal | None]]:
    """Every state `current` has a transition to (in `TRANSITIONS` order), each with `check`'s first refusal
    under `facts` (None: allowed now). A terminal state has none."""
    return [(target, check(current, target, facts)) for (source, target) in TRANSITIONS if source == current]
