"""Trigger policies: which triggers open a review, attach to one, or are only recorded (pure, no I/O).

Policies are evaluated in order and the first whose `match` fits decides. Time windows are measured on
the triggers' own event times (`occurred_at`), so a replay decides exactly as the first pass did.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.triggers import Category, Severity
from services.core.identity.clearance import GRANT_PATTERN, normal_grant
from services.core.identity.model import EMAIL_PATTERN, normal_email
from services.core.settings import ConfigurationError
from services.strategy_engine.lifecycle import PHASES, ReviewState
from services.strategy_engine.reminders import MAX_LEVELS, EscalationStep, TargetKind, chain_problem, default_chain

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: object) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w` (or a number of days)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(days=value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30d, 12h or 15m")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


Duration = Annotated[timedelta, Field()]
GrantToken = Annotated[str, Field(pattern=GRANT_PATTERN, max_length=400), AfterValidator(normal_grant)]
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=320), AfterValidator(normal_email)]


class Action(StrEnum):
    OPEN_REVIEW = "open_review"
    ATTACH_ONLY = "attach_only"
    RECORD_ONLY = "record_only"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    category: list[Category] = []
    severity: list[Severity] = []
    scope: list[str] = Field(default=[], description="glob patterns on the trigger's subject")
    data: dict[str, Any] = Field(default={}, description="equality on fields of the trigger's data")

    @field_validator("category", "severity", "scope", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class Threshold(_Model):
    count: Annotated[int, Field(ge=2)]
    window: Duration

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)


class EscalationLevel(_Model):
    """One level of a policy's escalation chain: `after` this long overdue, to `to`: `manager` (the owner's),
    `org_unit_lead` (of the review's org unit) or a list of people by e-mail."""

    after: Duration
    to: Literal["manager", "org_unit_lead"] | Annotated[list[Email], Field(min_length=1, max_length=20)]

    @field_validator("after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)

    def step(self, level: int) -> EscalationStep:
        if isinstance(self.to, list):
            return EscalationStep(level=level, after=self.after, target=TargetKind.NAMED, named=tuple(self.to))
        return EscalationStep(level=level, after=self.after, target=TargetKind(self.to))


class Policy(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
    description: str | None = None
    match: Match = Match()
    action: Action
    correlation_key: str = "{category}:{subject}"
    grouping_window: Duration = timedelta(days=30)
    attach_cap: Duration = timedelta(days=90)
    threshold: Threshold | None = None
    severity: Severity | None = None
    owner: str | None = None
    due_days: dict[ReviewState, float] = {}
    escalate_after: Duration = Field(
        default=timedelta(days=2),
        description="how long overdue before the first escalation (with `escalation`, its first level's `after`)",
    )
    escalation: Annotated[list[EscalationLevel], Field(max_length=MAX_LEVELS)] | None = Field(
        default=None,
        description="the escalation chain, each level strictly later; none: the owner's manager after "
        "`escalate_after`, then the org unit's lead after twice that; an empty list: no escalation",
    )
    reminders: Annotated[list[Duration], Field(max_length=10)] | None = Field(
        default=None,
        description="how long before a due date reminders go out (phases and acknowledgements of this policy's "
        "reviews); none: SMITS_REMINDER_OFFSETS",
    )
    restricted_to: list[GrantToken] = Field(
        default=[],
        max_length=100,
        description="need-to-know: the reviews this policy opens (and their triggers) are seen only by callers "
        "holding one of these grants (`principal:<email>`, `role:<role>`, `unit:<org unit>`) or cleared for all "
        "restricted data; empty = not restricted",
    )

    @field_validator("grouping_window", "attach_cap", "escalate_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)

    @field_validator("reminders", mode="before")
    @classmethod
    def _offsets(cls, value: object) -> object:
        return [parse_duration(item) for item in value] if isinstance(value, list) else value

    @field_validator("reminders")
    @classmethod
    def _positive(cls, value: list[timedelta] | None) -> list[timedelta] | None:
        if value is not None and any(offset <= timedelta(0) for offset in value):
            raise ValueError("reminders are durations before the due date: each must be positive")
        return value

    @model_validator(mode="before")
    @classmethod
    def _first_gap(cls, raw: Any) -> Any:
        """With a chain and no `escalate_after`, the first level's `after` is the escalation gap."""
        if isinstance(raw, dict) and raw.get("escalation") and "escalate_after" not in raw:
            first = raw["escalation"][0]
            if isinstance(first, dict) and "after" in first:
                return {**raw, "escalate_after": first["after"]}
        return raw

    @field_validator("escalation")
    @classmethod
    def _increasing(cls, value: list[EscalationLevel] | None) -> list[EscalationLevel] | None:
        problem = chain_problem([level.after for level in value or ()])
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("correlation_key")
    @classmethod
    def _template(cls, value: str) -> str:
        for _, field_name, _, _ in string.Formatter().parse(value):
            if field_name is None:
                continue
            root = field_name.split(".")[0]
            if root not in {"category", "subject", "severity", "source", "data"}:
                raise ValueError(
                    f"unknown placeholder {{{field_name}}}; use category, subject, severity, source or data.<field>"
                )
        return value

    @field_validator("due_days")
    @classmethod
    def _phases(cls, value: dict[ReviewState, float]) -> dict[ReviewState, float]:
        for state, days in value.items():
            if state not in PHASES:
                raise ValueError(f"{state.value} is not a phase with a due date")
            if days <= 0:
                raise ValueError(f"due_days.{state.value} must be positive")
        return value

    @model_validator(mode="after")
    def _windows(self) -> Policy:
        if self.attach_cap < self.grouping_window:
            raise ValueError("attach_cap must be at least the grouping_window")
        if self.escalation and self.escalation[0].after != self.escalate_after:
            raise ValueError("escalate_after is the first escalation level's `after`: give one or make them equal")
        return self

    def chain(self, escalate_after: timedelta | None = None) -> tuple[EscalationStep, ...]:
        """The escalation chain: the policy's own, or the default one from `escalate_after` (the gap a review
        stored when it opened; the policy's by default)."""
        if self.escalation is not None:
            return tuple(level.step(n) for n, level in enumerate(self.escalation, start=1))
        return default_chain(self.escalate_after if escalate_after is None else escalate_after)

    def due_in(self, state: ReviewState) -> timedelta | None:
        days = self.due_days.get(state, DEFAULT_DUE_DAYS.get(state))
        return None if days is None else timedelta(days=days)


DEFAULT_DUE_DAYS: Mapping[ReviewState, float] = {
    ReviewState.TRIAGE: 2,
    ReviewState.ASSESS: 10,
    ReviewState.GENERATE: 10,
    ReviewState.APPROVAL: 5,
    ReviewState.PUBLISH: 5,
    ReviewState.EXECUTE: 90,
    ReviewState.MONITOR: 30,
    ReviewState.ADJUST: 10,
}
FALLBACK = Policy(id="fallback", action=Action.RECORD_ONLY, description="no policy matched")


class PolicySet(_Model):
    version: int = 1
    policies: Annotated[list[Policy], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> PolicySet:
        ids = [policy.id for policy in self.policies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate policy ids: {', '.join(duplicates)}")
        return self

    def get(self, policy_id: str) -> Policy:
        return next((p for p in self.policies if p.id == policy_id), FALLBACK)


class PolicyError(ConfigurationError):
    """A policy file that cannot be used; the message names the file, the policy and the field."""


def load(path: Path | None = None) -> PolicySet:
    """The policies in `path`, or the bundled defaults; refuses an invalid file with a clear message."""
    source = str(path) if path else "bundled default_policies.yaml"
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path
            else (resources.files("services.strategy_engine").joinpath("default_policies.yaml").read_text("utf-8"))
        )
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{source}: cannot read policies: {exc}") from exc
    try:
        return PolicySet.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_where(raw, error["loc"]) + f": {error['msg']}" for error in exc.errors())
        raise PolicyError(f"{source}: invalid policies: {problems}") from exc


def _where(raw: Any, loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc]
    if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
        try:
            parts[1] = f"[{loc[1]}] ({raw['policies'][loc[1]]['id']})"
        except (KeyError, IndexError, TypeError):
            parts[1] = f"[{loc[1]}]"
    return ".".join(parts)


def matches(policy: Policy, trigger: TriggerAcceptedV1) -> bool:
    rule = policy.match
    if rule.category and trigger.category not in rule.category:
        return False
    if rule.severity and trigger.severity not in rule.severity:
        return False
    if rule.scope and not any(fnmatch.fnmatchcase(trigger.subject, pattern) for pattern in rule.scope):
        return False
    return all(trigger.data.get(name) == value for name, value in rule.data.items())


def select_policy(policies: PolicySet, trigger: TriggerAcceptedV1) -> Policy:
    return next((policy for policy in policies.policies if matches(policy, trigger)), FALLBACK)


class _Fields(dict[str, Any]):
    """Lets `{data.regulation_id}` read `data["regulation_id"]`; a missing field renders as `-`."""

    def __missing__(self, key: str) -> str:
        return "-"


class _Data:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return self._data.get(name, "-")


def correlation_key(policy: Policy, trigger: TriggerAcceptedV1) -> str:
    fields = _Fields(
        category=trigger.category.value,
        subject=trigger.subject,
        severity=trigger.severity.value,
        source=trigger.source,
        data=_Data(trigger.data),
    )
    return policy.correlation_key.format_map(fields)[:600]


class CorrelationOutcome(StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    RECORDED = "recorded"


@dataclass(frozen=True, slots=True)
class OpenReview:
    """The open review with the same correlation key, as correlation needs to see it."""

    first_trigger_at: datetime
    last_trigger_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What correlation decided for one trigger (plain records, not models: made for every trigger)."""

    policy_id: str
    correlation_key: str
    outcome: CorrelationOutcome
    reason: str
    severity: Severity


def decide(
    policy: Policy,
    trigger: TriggerAcceptedV1,
    *,
    key: str,
    open_review: OpenReview | None,
    matching_in_window: int,
) -> Decision:
    """What happens to one trigger. `matching_in_window` counts earlier triggers of this policy and key
    within the threshold window (this one excluded)."""
    severity = policy.severity or trigger.severity

    def made(outcome: CorrelationOutcome, reason: str) -> Decision:
        return Decision(policy_id=policy.id, correlation_key=key, outcome=outcome, reason=reason, severity=severity)

    if policy.action is Action.RECORD_ONLY:
        return made(CorrelationOutcome.RECORDED, policy.description or f"policy {policy.id} records only")
    if open_review is not None:
        since_last = trigger.occurred_at - open_review.last_trigger_at
        since_first = trigger.occurred_at - open_review.first_trigger_at
        if since_first > policy.attach_cap:
            stale = f"the open review's attach window ({policy.attach_cap}) has passed"
        elif since_last > policy.grouping_window:
            stale = f"more than {policy.grouping_window} after the review's last trigger"
        else:
            return made(CorrelationOutcome.ATTACHED, f"related to the open review for {key}")
    else:
        stale = f"no open review for {key}"
    if policy.action is Action.ATTACH_ONLY:
        return made(CorrelationOutcome.RECORDED, f"attach only: {stale}")
    if policy.threshold is not None and matching_in_window + 1 < policy.threshold.count:
        seen = matching_in_window + 1
        return made(
            CorrelationOutcome.RECORDED,
            f"below threshold: {seen} of {policy.threshold.count} within {policy.threshold.window}",
        )
    return made(CorrelationOutcome.OPENED, f"{stale}; opening a review")
