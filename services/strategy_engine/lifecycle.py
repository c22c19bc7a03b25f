"""Review cycle states (PDCA) as pure code. Guards and the full transition table grow with the engine."""

from __future__ import annotations

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


TERMINAL = frozenset({ReviewState.CLOSED, ReviewState.CANCELLED, ReviewState.MERGED})
INITIAL = ReviewState.TRIAGE


def is_open(state: ReviewState) -> bool:
    """An open review still accepts related triggers."""
    return state not in TERMINAL
