"""Output documents: kinds, version statuses and their order, distribution lists, acknowledgement campaigns
(recipients' decisions, change summaries) (pure)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.core.errors import Invalid
from services.core.identity.model import Role


class Kind(StrEnum):
    STRATEGY_ASSESSMENT_REPORT = "strategy_assessment_report"
    STRATEGY_PLAN = "strategy_plan"
    TACTICAL_PLAN = "tactical_plan"
    OPERATIONAL_PLAN = "operational_plan"
    STRATEGY_REVIEW = "strategy_review"
    MISSION_AND_VISION = "mission_and_vision"


class Status(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    SUPERSEDED = "superseded"


NEXT: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.IN_REVIEW}),
    Status.IN_REVIEW: frozenset({Status.APPROVED, Status.DRAFT}),
    Status.APPROVED: frozenset({Status.PUBLISHED}),
    Status.PUBLISHED: frozenset(),  # only publishing a later version supersedes it: no rollback
    Status.SUPERSEDED: frozenset(),
}
PER_ORG_UNIT = frozenset({Kind.TACTICAL_PLAN, Kind.OPERATIONAL_PLAN})


def may_move(current: Status, target: Status) -> bool:
    return target in NEXT[current]


class Recipient(BaseModel):
    """One entry of a distribution list: a person (`name`, an e-mail address; `org_unit` then only labels
    them), every member of an org unit (`org_unit` alone; with `sub_units`, the members of every unit under
    it too), or everyone holding a `role`. Resolved into people when the version is published."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="a person, by e-mail address"
    )
    org_unit: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="with `name`: the person's unit (a label); alone: every member of the unit"
    )
    role: Role | None = Field(default=None, description="everyone holding this role")
    sub_units: bool = Field(default=True, description="an org unit entry includes the members of units under it")
    required: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.role is not None and (self.name is not None or self.org_unit):
            raise ValueError("an entry names a person (name), an org unit or a role: not a role and another")
        if self.name is None and self.role is None and not self.org_unit:
            raise ValueError("an entry names a person (name), an org unit (org_unit) or a role (role)")
        return self

    @property
    def what(self) -> str:
        """The entry in words, for a refusal."""
        if self.name is not None:
            return f"person {self.name!r}"
        if self.role is not None:
            return f"role {self.role.value!r}"
        return f"org unit {self.org_unit!r}" + (" (with its sub-units)" if self.sub_units else "")


@dataclass(frozen=True, slots=True)
class Resolved:
    """One person a distribution resolved to: required if any entry naming them is; labelled with the org unit
    of the first entry that gives one."""

    email: str
    org_unit: str | None
    required: bool


def merge(found: Sequence[tuple[Recipient, Sequence[str]]]) -> list[Resolved]:
    """People of a resolved distribution (each entry with the e-mail addresses it resolved to), each once, in
    the order first named. An entry that resolved to nobody is refused (422)."""
    people: dict[str, Resolved] = {}
    for index, (entry, emails) in enumerate(found):
        if not emails:
            raise Invalid(
                f"distribution entry {index + 1}, {entry.what}, names nobody who can receive it "
                "(no such unit or no enabled member, nobody holding the role, or a disabled person)",
                field=f"distribution[{index}]",
            )
        label = entry.org_unit or None
        for email in emails:
            seen = people.get(email)
            if seen is None:
                people[email] = Resolved(email=email, org_unit=label, required=entry.required)
            else:
                people[email] = Resolved(
                    email=email, org_unit=seen.org_unit or label, required=seen.required or entry.required
                )
    return list(people.values())


class RecipientAnswer(StrEnum):
    """What a recipient answers: they hold the version, they refuse it, or they ask to be excused."""

    ACKNOWLEDGE = "acknowledge"
    DECLINE = "decline"
    EXCEPTION = "exception"


DECIDED = {RecipientAnswer.DECLINE: "declined", RecipientAnswer.EXCEPTION: "exception_requested"}
"""The stored decision of a recipient who did not acknowledge."""
REASON_MAX = 1000


def reason_of(decision: RecipientAnswer, reason: str | None) -> str | None:
    """A decline or an exception request needs a reason: trimmed, at most `REASON_MAX` characters, no control
    characters but line breaks and tabs. An acknowledgement takes none here (see `rights.recipient`)."""
    if decision is RecipientAnswer.ACKNOWLEDGE:
        return reason
    text = (reason or "").strip()
    if not text:
        raise Invalid(f"to {decision.value}, give a reason", field="reason")
    if len(text) > REASON_MAX:
        raise Invalid(f"a reason has at most {REASON_MAX} characters", field="reason")
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in text):
        raise Invalid("a reason holds no control characters", field="reason")
    return text


class AckState(StrEnum):
    """Where one recipient of a published version stands in its acknowledgement campaign."""

    ACKNOWLEDGED = "acknowledged"
    DECLINED = "declined"
    EXCEPTION_REQUESTED = "exception_requested"
    PENDING = "pending"
    OVERDUE = "overdue"


def ack_state(
    *, acknowledged_at: datetime | None, due_at: datetime, now: datetime, decision: str | None = None
) -> AckState:
    """Acknowledged (whenever, even late, even after declining), else the recipient's decision (declined,
    exception requested), else overdue once the due date has passed, else pending."""
    if acknowledged_at is not None:
        return AckState.ACKNOWLEDGED
    if decision is not None:
        return AckState(decision)
    return AckState.OVERDUE if due_at < now else AckState.PENDING


CHANGES_MAX = 2000
"""Characters of a change summary kept (each version's summary at most `CHANGE_LINE_MAX`)."""
CHANGE_LINE_MAX = 300


@dataclass(frozen=True, slots=True)
class Published:
    """A published version of a document, as a change summary tells it."""

    version: int
    published_at: datetime | None
    summary: str
    restricted: bool


CHANGES_BUDGET = 300_000
"""Characters of change summaries one `review.document_published` event carries in all: a large distribution gets
shorter summaries each (at least `CHANGES_MIN`), so the event stays well under Kafka's message size."""
CHANGES_MIN = 120
MAX_RECIPIENTS = 5_000
"""People one published version may be distributed to: its `review.document_published` event names each with a
change summary (some 300 bytes a person), and 5,000 keep it near 1.5 MB, well under Kafka's 4 MiB. A larger
audience is several documents (per org unit), which is how plans are distributed anyway."""


def changes_limit(recipients: int) -> int:
    """How long each of `recipients` change summaries may be."""
    return max(CHANGES_MIN, min(CHANGES_MAX, CHANGES_BUDGET // max(recipients, 1)))


def changes_since(
    last: int | None, versions: Sequence[Published], *, received_before: bool, limit: int = CHANGES_MAX
) -> str:
    """What changed for a recipient since the version they last acknowledged (`last`): the summaries of the
    versions published after it, newest first, bounded; a version of a need-to-know review is named without
    its summary. With no acknowledged version: the first version they receive, or (`received_before`) that
    they acknowledged none of the earlier ones, followed by the newest summaries."""
    newer = sorted((v for v in versions if last is None or v.version > last), key=lambda v: -v.version)
    if last is not None:
        head = f"Changes since version {last}, the one you acknowledged:"
    elif received_before:
        head = "You have not acknowledged an earlier version of this document. The versions so far:"
    else:
        return "This is the first version of this document you receive."
    lines = [head]
    for v in newer:
        when = f" ({v.published_at:%Y-%m-%d})" if v.published_at else ""
        text = "its summary is need-to-know" if v.restricted else (_one_line(v.summary) or "no summary given")
        lines.append(f"- Version {v.version}{when}: {_bounded(text, CHANGE_LINE_MAX)}")
    out = "\n".join(lines)
    return out if len(out) <= limit else _bounded(out, limit)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
