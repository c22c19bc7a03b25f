"""Policy files, matching and correlation decisions (pure, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.contracts.accepted import TriggerAcceptedV1
from services.contracts.triggers import Category, Severity
from services.strategy_engine.policies import (
    Action,
    CorrelationOutcome,
    OpenReview,
    Policy,
    PolicyError,
    PolicySet,
    correlation_key,
    decide,
    load,
    parse_duration,
    select_policy,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def trigger(
    category: Category = Category.REGULATION_UPDATE,
    *,
    severity: Severity = Severity.HIGH,
    subject: str = "bu-1",
    at: datetime = T0,
    **data: Any,
) -> TriggerAcceptedV1:
    return TriggerAcceptedV1(
        source="/s",
        id="1",
        type=f"smits.trigger.{category.value}.v1",
        category=category,
        severity=severity,
        subject=subject,
        occurred_at=at,
        received_at=at,
        data=data,
    )


def test_bundled_defaults_load_and_cover_every_category() -> None:
    policies = load()
    covered = {c for p in policies.policies for c in p.match.category}
    assert covered == set(Category)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies: []", "policies"),
        ("policies:\n  - {id: a, action: explode}", "[0] (a).action"),
        ("policies:\n  - {id: a, action: open_review, grouping_window: 10x}", "grouping_window"),
        ("policies:\n  - {id: a, action: open_review, correlation_key: '{nope}'}", "unknown placeholder"),
        ("policies:\n  - {id: a, action: open_review}\n  - {id: a, action: record_only}", "duplicate policy ids: a"),
        ("policies:\n  - {id: a, action: open_review, due_days: {closed: 3}}", "not a phase"),
        ("policies:\n  - {id: a, action: open_review, grouping_window: 30d, attach_cap: 1d}", "attach_cap"),
        ("policies: [", "cannot read"),
    ],
)
def test_invalid_policy_files_are_refused_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as error:
        load(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_matching_on_category_severity_scope_and_data() -> None:
    policies = PolicySet.model_validate(
        {
            "policies": [
                {
                    "id": "eu-high",
                    "action": "open_review",
                    "match": {
                        "category": "regulation_update",
                        "severity": ["high"],
                        "scope": "bu-*",
                        "data": {"jurisdiction": "EU"},
                    },
                },
                {"id": "other", "action": "record_only", "match": {}},
            ]
        }
    )
    assert select_policy(policies, trigger(jurisdiction="EU")).id == "eu-high"
    assert select_policy(policies, trigger(jurisdiction="US")).id == "other"
    assert select_policy(policies, trigger(jurisdiction="EU", subject="group")).id == "other"
    assert select_policy(policies, trigger(jurisdiction="EU", severity=Severity.LOW)).id == "other"
    assert select_policy(policies, trigger(Category.GOAL_CHANGE, jurisdiction="EU")).id == "other"


def test_no_match_falls_back_to_record_only() -> None:
    policies = PolicySet.model_validate(
        {"policies": [{"id": "x", "action": "open_review", "match": {"category": "goal_change"}}]}
    )
    policy = select_policy(policies, trigger())
    assert policy.action is Action.RECORD_ONLY


def test_correlation_key_templates_read_data_fields() -> None:
    policy = Policy(id="p", action=Action.OPEN_REVIEW, correlation_key="regulation:{data.regulation_id}:{subject}")
    assert correlation_key(policy, trigger(regulation_id="DORA")) == "regulation:DORA:bu-1"
    assert correlation_key(policy, trigger()) == "regulation:-:bu-1"


REG = Policy(id="reg", action=Action.OPEN_REVIEW, grouping_window=timedelta(days=30), attach_cap=timedelta(days=90))
OPEN = OpenReview(first_trigger_at=T0, last_trigger_at=T0 + timedelta(days=20))


@pytest.mark.parametrize(
    ("policy", "review", "at", "earlier", "outcome"),
    [
        (REG, None, T0, 0, CorrelationOutcome.OPENED),
        (REG, OPEN, T0 + timedelta(days=40), 0, CorrelationOutcome.ATTACHED),  # within 30 d of the last trigger
        (REG, OPEN, T0 + timedelta(days=51), 0, CorrelationOutcome.OPENED),  # grouping window passed
        (
            REG,
            OpenReview(first_trigger_at=T0, last_trigger_at=T0 + timedelta(days=85)),
            T0 + timedelta(days=91),
            0,
            CorrelationOutcome.OPENED,
        ),  # hard cap passed although the last trigger is recent
        (REG.model_copy(update={"action": Action.ATTACH_ONLY}), None, T0, 0, CorrelationOutcome.RECORDED),
        (
            REG.model_copy(update={"action": Action.ATTACH_ONLY}),
            OPEN,
            T0 + timedelta(days=21),
            0,
            CorrelationOutcome.ATTACHED,
        ),
        (REG.model_copy(update={"action": Action.RECORD_ONLY}), OPEN, T0, 0, CorrelationOutcome.RECORDED),
    ],
)
def test_decisions(
    policy: Policy, review: OpenReview | None, at: datetime, earlier: int, outcome: CorrelationOutcome
) -> None:
    decision = decide(policy, trigger(at=at), key="k", open_review=review, matching_in_window=earlier)
    assert decision.outcome is outcome
    assert decision.reason
    assert (decision.policy_id, decision.correlation_key) == (policy.id, "k")


def test_threshold_opens_only_at_the_nth_trigger_in_the_window() -> None:
    policy = Policy.model_validate({"id": "fb", "action": "open_review", "threshold": {"count": 3, "window": "7d"}})
    outcomes = [decide(policy, trigger(), key="k", open_review=None, matching_in_window=n).outcome for n in range(3)]
    assert outcomes == [CorrelationOutcome.RECORDED, CorrelationOutcome.RECORDED, CorrelationOutcome.OPENED]
    below = decide(policy, trigger(), key="k", open_review=None, matching_in_window=1)
    assert "2 of 3" in below.reason


def test_policy_severity_overrides_the_trigger() -> None:
    policy = Policy(id="p", action=Action.OPEN_REVIEW, severity=Severity.CRITICAL)
    assert decide(policy, trigger(), key="k", open_review=None, matching_in_window=0).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (3, timedelta(days=3)),
    ],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected
