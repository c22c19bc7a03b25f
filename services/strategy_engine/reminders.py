"""Which timers a review phase or an acknowledgement gets (pure, no I/O): reminders before a due date and the
escalation chain after it.

A reminder goes out `before` its due date, once; one whose time has already passed when its timers are armed is
never sent (no burst of stale reminders). An escalation level goes out `after` the due date, once, whenever the
timer loop sees it due: the review is overdue, so even a late level still has someone to tell."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

MAX_LEVELS = 10


class TimerKind(StrEnum):
    REMINDER = "reminder"
    ESCALATION = "escalation"


class TargetKind(StrEnum):
    MANAGER = "manager"
    """The manager of the review's owner."""
    ORG_UNIT_LEAD = "org_unit_lead"
    """The lead of the review's org unit (its scope)."""
    NAMED = "named"
    """People named by e-mail in the policy."""


@dataclass(frozen=True, kw_only=True)
class EscalationStep:
    """One level of an escalation chain: `after` the due date, to `target` (`named` lists the people)."""

    level: int
    after: timedelta
    target: TargetKind
    named: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Planned:
    """A timer to store: a reminder `before_s` seconds before the due date, or escalation `level`."""

    kind: TimerKind
    fire_at: datetime
    before_s: int | None = None
    level: int | None = None


def default_chain(escalate_after: timedelta) -> tuple[EscalationStep, ...]:
    """The chain of a policy that names none: the owner's manager after `escalate_after`, then the org unit's
    lead after twice that."""
    return (
        EscalationStep(level=1, after=escalate_after, target=TargetKind.MANAGER),
        EscalationStep(level=2, after=2 * escalate_after, target=TargetKind.ORG_UNIT_LEAD),
    )


def chain_problem(gaps: Sequence[timedelta]) -> str | None:
    """Why these `after` gaps cannot make a chain (None: they can): each level comes strictly later."""
    if len(gaps) > MAX_LEVELS:
        return f"at most {MAX_LEVELS} levels"
    if any(gap < timedelta(0) for gap in gaps):
        return "`after` is how long overdue: it cannot be negative"
    for n, (earlier, later) in enumerate(pairwise(gaps), start=2):
        if later <= earlier:
            return f"level {n} must come after level {n - 1} ({later} is not more than {earlier})"
    return None


def reminders(due_at: datetime, offsets: Iterable[timedelta], *, now: datetime) -> list[Planned]:
    """A reminder for each distinct positive offset whose time (`due_at - offset`) is still ahead of `now`."""
    planned = []
    for offset in sorted({o for o in offsets if o > timedelta(0)}, reverse=True):
        fire_at = due_at - offset
        if fire_at > now:
            planned.append(Planned(kind=TimerKind.REMINDER, fire_at=fire_at, before_s=round(offset.total_seconds())))
    return planned


def escalations(due_at: datetime, chain: Iterable[EscalationStep], *, skip_first: bool = False) -> list[Planned]:
    """A timer for each level of `chain`; `skip_first` leaves out level 1 (already sent in this phase by an
    earlier smits, whose single escalation was this level)."""
    return [
        Planned(kind=TimerKind.ESCALATION, fire_at=due_at + step.after, level=step.level)
        for step in chain
        if not (skip_first and step.level == 1)
    ]


def phase_timers(
    due_at: datetime | None,
    *,
    offsets: Iterable[timedelta],
    chain: Iterable[EscalationStep],
    now: datetime,
    escalated_before: bool = False,
) -> list[Planned]:
    """Every timer of a phase due at `due_at` (none without a due date), in firing order."""
    if due_at is None:
        return []
    planned = reminders(due_at, offsets, now=now) + escalations(due_at, chain, skip_first=escalated_before)
    return sorted(planned, key=lambda timer: timer.fire_at)


def step_of(chain: Iterable[EscalationStep], level: int) -> EscalationStep | None:
    return next((step for step in chain if step.level == level), None)


def days_overdue(due_at: datetime, now: datetime) -> float:
    """Days past `due_at`, to the hundredth (0 before it)."""
    return round(max(timedelta(0), now - due_at) / timedelta(days=1), 2)
