"""Need-to-know, the pure parts: grant tokens in policies and settings, webhook redaction, scope filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.identity.clearance import visible
from services.core.settings import ConfigurationError, load_settings
from services.notifier.flows import webhook_body
from services.notifier.matching import wants
from services.notifier.redaction import KEPT, redacted
from services.strategy_engine.policies import Policy, PolicySet, load

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


def test_the_bundled_deal_policy_is_restricted_to_strategy_managers_and_no_other_is() -> None:
    restricted = {policy.id: policy.restricted_to for policy in load().policies if policy.restricted_to}
    assert restricted == {"merger-acquisition": ["role:strategy_manager"]}


def test_grant_tokens_are_checked_and_e_mail_addresses_normalised() -> None:
    policy = Policy(id="p", action="open_review", restricted_to=["principal:CFO@Corp.Example", "unit:board", "*"])
    assert policy.restricted_to == ["principal:cfo@corp.example", "unit:board", "*"]
    for bad in ("role:ceo", "cfo@corp.example", "unit:", "group:x"):
        with pytest.raises(ValueError, match="restricted_to"):
            PolicySet.model_validate({"policies": [{"id": "p", "action": "open_review", "restricted_to": [bad]}]})
    with pytest.raises(ConfigurationError, match=r"SMITS_INGEST_RESTRICTED_TO: .*role:ceo"):
        load_settings(ingest_restricted_to="role:ceo")
    with pytest.raises(ConfigurationError, match=r"SMITS_INGEST_RESTRICTED_CATEGORIES: .*mergers"):
        load_settings(ingest_restricted_categories="mergers")
    assert load_settings(ingest_restricted_to="unit:board, principal:A@B.example").ingest_restricted_to == (
        "unit:board",
        "principal:a@b.example",
    )


@given(grants=st.frozensets(st.text(max_size=8)), clearance=st.frozensets(st.text(max_size=8)))
def test_an_unrestricted_review_is_visible_to_all_and_star_sees_every_restricted_one(
    grants: frozenset[str], clearance: frozenset[str]
) -> None:
    assert visible(grants, restricted=False, clearance=clearance)
    assert visible(grants | {"*"}, restricted=True, clearance=clearance)
    assert visible(grants, restricted=True, clearance=clearance) == ("*" in grants or bool(grants & clearance))


@given(data=st.dictionaries(st.text(max_size=15), json_values, max_size=8), trigger=json_values)
def test_redaction_keeps_only_ids(data: dict[str, Any], trigger: Any) -> None:
    kept = redacted({**data, "trigger": trigger})
    assert set(kept) <= {*KEPT, "trigger"}
    assert all(kept[name] == data[name] for name in KEPT if name in data)
    if isinstance(trigger, dict):
        assert kept["trigger"] == {name: trigger[name] for name in ("source", "id") if name in trigger}
    else:
        assert "trigger" not in kept


def _event(*, restricted: bool) -> ReviewEventV1:
    review = uuid.uuid4()
    return ReviewEventV1(
        id=uuid.uuid4(),
        type=ReviewEventType.APPROVAL_RECORDED,
        review_id=review,
        sequence=3,
        occurred_at=datetime(2026, 11, 23, tzinfo=UTC),
        data={"review_id": str(review), "version": 2, "approver": "cfo@corp.example", "verdict": "approve"},
        category="merger_acquisition",
        severity="high",
        scope="Contoso",
        restricted=restricted,
    )


def test_only_a_restricted_event_for_an_uncleared_subscription_is_redacted() -> None:
    hidden, plain = _event(restricted=True), _event(restricted=False)
    assert "cfo@corp.example" not in webhook_body(hidden, cleared=False)
    assert '"version":2' in webhook_body(hidden, cleared=False)
    assert "cfo@corp.example" in webhook_body(hidden, cleared=True)
    assert webhook_body(plain, cleared=False) == webhook_body(plain, cleared=True)


@pytest.mark.parametrize(
    ("restricted", "cleared", "expected"), [(True, False, False), (True, True, True), (False, False, True)]
)
def test_an_uncleared_subscription_cannot_select_restricted_events_by_scope(
    restricted: bool, cleared: bool, expected: bool
) -> None:
    event = _event(restricted=restricted)

    def selected(scopes: list[str]) -> bool:
        return wants(event_types=[], categories=[], severities=[], scopes=scopes, event=event, cleared=cleared)

    assert selected(["Contoso"]) is expected
    assert selected([])  # without a scope filter it gets the (perhaps redacted) event
