"""Reminders before a due date and escalation chains after it: which timers a phase or an acknowledgement gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.settings import ConfigurationError, load_settings
from services.strategy_engine.policies import Action, Policy, PolicyError, PolicySet
from services.strategy_engine.reminders import (
    EscalationStep,
    TargetKind,
    TimerKind,
    chain_problem,
    days_overdue,
    default_chain,
    escalations,
    phase_timers,
    reminders,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_reminders_go_out_before_the_due_date_once_per_offset() -> None:
    due = NOW + 10 * DAY
    planned = reminders(due, [DAY, 7 * DAY, DAY], now=NOW)
    assert [(p.fire_at, p.before_s) for p in planned] == [(NOW + 3 * DAY, 7 * 86_400), (NOW + 9 * DAY, 86_400)]
    assert {p.kind for p in planned} == {TimerKind.REMINDER}


def test_a_reminder_already_past_when_armed_is_not_planned() -> None:
    due = NOW + 2 * DAY  # a 2-day phase: "7 days before" was before it began
    assert [p.before_s for p in reminders(due, [7 * DAY, DAY], now=NOW)] == [86_400]
    assert reminders(due, [2 * DAY], now=NOW) == []  # exactly now: past, not sent
    assert reminders(NOW - DAY, [DAY], now=NOW) == []


def test_non_positive_offsets_are_ignored() -> None:
    assert reminders(NOW + 5 * DAY, [timedelta(0), -DAY], now=NOW) == []


def test_the_default_chain_is_manager_then_lead_after_twice_the_gap() -> None:
    assert default_chain(2 * DAY) == (
        EscalationStep(level=1, after=2 * DAY, target=TargetKind.MANAGER),
        EscalationStep(level=2, after=4 * DAY, target=TargetKind.ORG_UNIT_LEAD),
    )


def test_escalations_follow_the_due_date_by_each_levels_gap() -> None:
    due = NOW + DAY
    planned = escalations(due, default_chain(2 * DAY))
    assert [(p.level, p.fire_at) for p in planned] == [(1, due + 2 * DAY), (2, due + 4 * DAY)]
    assert [p.level for p in escalations(due, default_chain(DAY), skip_first=True)] == [2]


def test_a_phase_without_due_date_gets_no_timers() -> None:
    assert phase_timers(None, offsets=[DAY], chain=default_chain(DAY), now=NOW) == []


def test_phase_timers_are_in_firing_order() -> None:
    due = NOW + 10 * DAY
    planned = phase_timers(due, offsets=[7 * DAY, DAY], chain=default_chain(2 * DAY), now=NOW)
    assert [(p.kind, p.fire_at - due) for p in planned] == [
        (TimerKind.REMINDER, -7 * DAY),
        (TimerKind.REMINDER, -DAY),
        (TimerKind.ESCALATION, 2 * DAY),
        (TimerKind.ESCALATION, 4 * DAY),
    ]


@given(
    due_in=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    offsets=st.lists(st.timedeltas(min_value=-DAY, max_value=timedelta(days=400)), max_size=6),
    gaps=st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)), max_size=5, unique=True),
)
def test_no_reminder_is_stale_and_levels_come_in_order(
    due_in: timedelta, offsets: list[timedelta], gaps: list[timedelta]
) -> None:
    due = NOW + due_in
    chain = [
        EscalationStep(level=n, after=gap, target=TargetKind.MANAGER) for n, gap in enumerate(sorted(gaps), start=1)
    ]
    planned = phase_timers(due, offsets=offsets, chain=chain, now=NOW)
    sent = [p for p in planned if p.kind is TimerKind.REMINDER]
    assert all(NOW < p.fire_at < due for p in sent)
    assert len({p.before_s for p in sent}) == len(sent)  # each offset once
    levels = [p for p in planned if p.kind is TimerKind.ESCALATION]
    assert [p.level for p in levels] == list(range(1, len(gaps) + 1))
    assert [p.fire_at for p in levels] == sorted(p.fire_at for p in levels)
    assert [p.fire_at for p in planned] == sorted(p.fire_at for p in planned)


def test_days_overdue() -> None:
    assert days_overdue(NOW, NOW + timedelta(days=2, hours=12)) == 2.5
    assert days_overdue(NOW, NOW - DAY) == 0


@pytest.mark.parametrize(
    ("gaps", "problem"),
    [
        ([DAY, DAY], "level 2 must come after level 1"),
        ([2 * DAY, DAY], "level 2 must come after level 1"),
        ([-DAY], "cannot be negative"),
        ([DAY * n for n in range(1, 12)], "at most 10 levels"),
    ],
)
def test_a_chain_whose_levels_do_not_come_later_is_refused(gaps: list[timedelta], problem: str) -> None:
    assert problem in (chain_problem(gaps) or "")


def _policy(**fields: Any) -> Policy:
    return Policy.model_validate({"id": "p", "action": Action.OPEN_REVIEW.value, **fields})


def test_a_policy_names_its_chain_in_yaml_shape() -> None:
    policy = _policy(
        escalation=[
            {"after": "2d", "to": "manager"},
            {"after": 4, "to": "org_unit_lead"},
            {"after": "7d", "to": ["CIO@Example.org", "cfo@example.org"]},
        ]
    )
    assert policy.escalate_after == 2 * DAY  # the first level's gap
    assert policy.chain() == (
        EscalationStep(level=1, after=2 * DAY, target=TargetKind.MANAGER),
        EscalationStep(level=2, after=4 * DAY, target=TargetKind.ORG_UNIT_LEAD),
        EscalationStep(level=3, after=7 * DAY, target=TargetKind.NAMED, named=("cio@example.org", "cfo@example.org")),
    )


def test_without_a_chain_the_default_follows_escalate_after() -> None:
    assert _policy(escalate_after="3d").chain() == default_chain(3 * DAY)
    assert _policy().chain(timedelta(hours=5)) == default_chain(timedelta(hours=5))  # the review's stored gap
    assert _policy(escalation=[]).chain() == ()  # explicitly none


@pytest.mark.parametrize(
    "fields",
    [
        {"escalation": [{"after": "2d", "to": "manager"}, {"after": "2d", "to": "org_unit_lead"}]},
        {"escalation": [{"after": "4d", "to": "manager"}, {"after": "2d", "to": "org_unit_lead"}]},
        {"escalation": [{"after": "2d", "to": "boss"}]},
        {"escalation": [{"after": "2d", "to": ["not an e-mail"]}]},
        {"escalation": [{"after": "2d", "to": []}]},
        {"escalation": [{"after": "2d", "to": "manager", "extra": 1}]},
        {"escalation": [{"after": "2d", "to": "manager"}], "escalate_after": "3d"},
        {"reminders": ["0d"]},
        {"reminders": ["soon"]},
    ],
)
def test_invalid_chains_and_reminders_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (pydantic's ValidationError, with the field's message)
        _policy(**fields)


def test_existing_policy_files_stay_valid() -> None:
    policies = PolicySet.model_validate({"policies": [{"id": "old", "action": "open_review", "escalate_after": "36h"}]})
    assert policies.get("old").chain() == default_chain(timedelta(hours=36))
    assert policies.get("old").reminders is None


def test_a_policy_file_with_a_bad_chain_names_the_policy(tmp_path: Any) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "policies:\n  - id: deals\n    action: open_review\n    escalation:\n"
        "      - {after: 3d, to: manager}\n      - {after: 1d, to: org_unit_lead}\n"
    )
    from services.strategy_engine.policies import load

    with pytest.raises(PolicyError, match=r"\(deals\).escalation.*level 2 must come after level 1"):
        load(path)


@pytest.mark.parametrize(
    ("value", "offsets"),
    [
        ("7d,1d", (604_800.0, 86_400.0)),
        ("1d, 7d, 1d", (604_800.0, 86_400.0)),
        ("3600,90m", (5_400.0, 3_600.0)),
        ("2w,36h,30s", (1_209_600.0, 129_600.0, 30.0)),
        ("", ()),
    ],
)
def test_reminder_offsets_setting(monkeypatch: pytest.MonkeyPatch, value: str, offsets: tuple[float, ...]) -> None:
    monkeypatch.setenv("SMITS_REMINDER_OFFSETS", value)
    assert load_settings().reminder_offsets == offsets


def test_reminder_offsets_default_to_a_week_and_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMITS_REMINDER_OFFSETS", raising=False)
    assert load_settings().reminder_offsets == (604_800.0, 86_400.0)


@pytest.mark.parametrize("value", ["7 days", "-1d", "0", "1y", "400d", "1d,,x"])
def test_malformed_reminder_offsets_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SMITS_REMINDER_OFFSETS", value)
    with pytest.raises(ConfigurationError, match="SMITS_REMINDER_OFFSETS"):
        load_settings()
