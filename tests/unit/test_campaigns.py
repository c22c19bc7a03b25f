"""Acknowledgement campaigns, pure parts: distribution entries and their merge, recipients' reasons, change
summaries, signed links (untrusted tokens), and the campaign e-mail's per-recipient content."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from functools import partial
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from services.core.errors import Invalid
from services.core.identity.model import Role
from services.core.links import AckLink, LinkRefused, sign, verify
from services.notifier.mail import MailConfig, compose, document_notice
from services.strategy_engine.documents import (
    CHANGES_BUDGET,
    CHANGES_MAX,
    CHANGES_MIN,
    REASON_MAX,
    Published,
    Recipient,
    RecipientAnswer,
    changes_limit,
    changes_since,
    merge,
    reason_of,
)

KEY = "k" * 40
T = TypeVar("T")
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DOC = uuid.UUID("8d4f5a57-0a3f-4d2a-9d0c-1a2b3c4d5e6f")
LINK = AckLink(
    recipient="ana@example.org", document_id=DOC, version=2, expires_at=NOW + timedelta(days=3), token_id="t1"
)


# --- distribution entries -----------------------------------------------------------------------------------


def test_todays_entries_stay_valid_and_new_kinds_are_one_of_person_unit_role() -> None:
    assert Recipient.model_validate({"name": "a@example.org", "org_unit": "Ops", "required": False}).what == (
        "person 'a@example.org'"
    )
    assert Recipient(org_unit="Ops").what == "org unit 'Ops' (with its sub-units)"
    assert Recipient(role=Role.APPROVER).what == "role 'approver'"
    for bad in (
        {},
        {"required": True},
        {"role": "approver", "name": "a@example.org"},
        {"role": "approver", "org_unit": "x"},
    ):
        with pytest.raises(ValidationError):
            Recipient.model_validate(bad)


def test_merge_gives_each_person_one_acknowledgement_and_refuses_an_entry_naming_nobody() -> None:
    unit, person, role = (
        Recipient(org_unit="Ops", required=False),
        Recipient(name="b@x.org"),
        Recipient(role=Role.ADMIN),
    )
    merged = merge([(unit, ["a@x.org", "b@x.org"]), (person, ["b@x.org"]), (role, ["a@x.org", "c@x.org"])])
    assert [(p.email, p.org_unit, p.required) for p in merged] == [
        ("a@x.org", "Ops", True),
        ("b@x.org", "Ops", True),
        ("c@x.org", None, True),
    ]
    with pytest.raises(Invalid) as refused:
        merge([(person, ["b@x.org"]), (role, [])])
    assert refused.value.extra == {"field": "distribution[1]"}
    assert "role 'admin'" in refused.value.detail


# --- reasons ------------------------------------------------------------------------------------------------


@given(st.text(max_size=1200))
def test_a_reason_is_refused_or_kept_trimmed_bounded_and_free_of_control_characters(text: str) -> None:
    for answer in (RecipientAnswer.DECLINE, RecipientAnswer.EXCEPTION):
        kept, refused = _outcome(partial(reason_of, answer, text))
        if refused is not None:
            assert isinstance(refused, Invalid)
            assert refused.extra == {"field": "reason"}
            continue
        assert kept is not None
        assert kept == kept.strip()
        assert 0 < len(kept) <= REASON_MAX
        assert not any(ord(c) < 32 and c not in "\n\t" for c in kept)


def _outcome(call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def test_a_decline_needs_a_reason() -> None:
    with pytest.raises(Invalid):
        reason_of(RecipientAnswer.DECLINE, "   ")
    with pytest.raises(Invalid):
        reason_of(RecipientAnswer.EXCEPTION, None)
    assert reason_of(RecipientAnswer.DECLINE, "  not mine \n") == "not mine"


# --- change summaries ---------------------------------------------------------------------------------------

HISTORY = [
    Published(version=1, published_at=NOW, summary="one", restricted=False),
    Published(version=2, published_at=NOW, summary="two: secret deal", restricted=True),
    Published(version=3, published_at=NOW, summary="three", restricted=False),
]


def test_changes_since_the_acknowledged_version_newest_first_hiding_need_to_know_summaries() -> None:
    text = changes_since(1, HISTORY, received_before=True)
    assert text.splitlines() == [
        "Changes since version 1, the one you acknowledged:",
        "- Version 3 (2026-11-24): three",
        "- Version 2 (2026-11-24): its summary is need-to-know",
    ]
    assert (
        changes_since(None, HISTORY, received_before=False) == "This is the first version of this document you receive."
    )
    unacknowledged = changes_since(None, HISTORY, received_before=True).splitlines()
    assert unacknowledged[0].startswith("You have not acknowledged an earlier version")
    assert [line[:11] for line in unacknowledged[1:]] == ["- Version 3", "- Version 2", "- Version 1"]


@given(
    st.lists(st.text(max_size=3000), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=100_000),
)
def test_a_change_summary_is_bounded_and_a_large_distribution_gets_shorter_ones(
    summaries: list[str], last: int, recipients: int
) -> None:
    history = [
        Published(version=n + 1, published_at=None, summary=s, restricted=False) for n, s in enumerate(summaries)
    ]
    assert len(changes_since(last or None, history, received_before=True)) <= CHANGES_MAX
    limit = changes_limit(recipients)
    assert len(changes_since(last or None, history, received_before=True, limit=limit)) <= limit
    assert limit * recipients <= max(CHANGES_BUDGET, CHANGES_MIN * recipients)


# --- signed links -------------------------------------------------------------------------------------------


def test_a_signed_link_verifies_until_it_expires_and_only_with_its_key() -> None:
    token = sign(LINK, secret=KEY, now=NOW)
    assert verify(token, secret=KEY, now=NOW) == LINK
    with pytest.raises(LinkRefused) as expired:
        verify(token, secret=KEY, now=LINK.expires_at + timedelta(seconds=1))
    assert expired.value.link == "expired"
    with pytest.raises(LinkRefused) as foreign:
        verify(token, secret="z" * 40, now=NOW)
    assert foreign.value.link == "invalid"


@given(st.data())
def test_an_altered_token_is_refused_or_means_exactly_the_same(data: st.DataObject) -> None:
    token = sign(LINK, secret=KEY, now=NOW)
    where = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    altered = token[:where] + replacement + token[where + 1 :]
    link, refused = _outcome(lambda: verify(altered, secret=KEY, now=NOW))
    if refused is not None:
        assert isinstance(refused, LinkRefused)
        assert refused.link == "invalid"
    else:
        assert link == LINK  # base64's spare bits: the very same claims, signature and all


@given(st.text(max_size=3000))
def test_any_text_as_a_token_is_refused_as_invalid(text: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        verify(text, secret=KEY, now=NOW)
    assert refused.value.link == "invalid"


# --- the campaign e-mail -----------------------------------------------------------------------------------


def _data(**more: object) -> dict[str, object]:
    return {
        "document_id": str(DOC),
        "version": 2,
        "title": "Plan",
        "summary": "two",
        "recipients": ["ana@example.org", "ben@example.org"],
        "acknowledge_by": (NOW + timedelta(days=10)).isoformat(),
        "recipients_detail": [
            {"email": "ANA@example.org", "last_acknowledged_version": 1, "changes": "Changes since version 1: two"},
            {"email": "ben@example.org", "last_acknowledged_version": None, "changes": "First for Ben"},
            {"email": "not an address", "changes": "x"},
            "junk",
        ],
        **more,
    }


def _text_of(raw: str) -> str:
    message = message_from_string(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_each_recipient_is_told_their_own_changes_and_gets_their_own_signed_link() -> None:
    config = MailConfig(sender="smits@example.org", public_url="https://s.example.org", link_key=SecretStr(KEY))
    notice = document_notice(_data(), restricted=False, public_url=config.public_url)
    assert notice is not None
    delivery = uuid.uuid4()
    ana = _text_of(compose(notice, delivery_id=delivery, recipient="ana@example.org", config=config, now=NOW))
    ben = _text_of(compose(notice, delivery_id=uuid.uuid4(), recipient="ben@example.org", config=config, now=NOW))
    assert "Changes since version 1: two" in ana
    assert "First for Ben" not in ana
    assert "First for Ben" in ben
    token = ana.split("/v1/acknowledge-link?token=", 1)[1].split()[0]
    link = verify(token, secret=KEY, now=NOW)
    assert (link.recipient, link.document_id, link.version, link.token_id) == ("ana@example.org", DOC, 2, delivery.hex)
    assert link.expires_at == NOW + timedelta(days=10) + config.link_grace
    unsigned = MailConfig(sender="smits@example.org", public_url="https://s.example.org")
    plain = _text_of(compose(notice, delivery_id=delivery, recipient="ana@example.org", config=unsigned, now=NOW))
    assert "acknowledge-link" not in plain


def test_a_restricted_reviews_notice_carries_no_change_summary_and_no_signed_link() -> None:
    config = MailConfig(sender="smits@example.org", public_url="https://s.example.org", link_key=SecretStr(KEY))
    notice = document_notice(_data(), restricted=True, public_url=config.public_url)
    assert notice is not None
    text = _text_of(compose(notice, delivery_id=uuid.uuid4(), recipient="ana@example.org", config=config, now=NOW))
    assert "Changes since" not in text
    assert "acknowledge-link" not in text
    assert "Plan" not in text


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["email", "changes", "last_acknowledged_version", "x"]), inner, max_size=4
            )
        ),
        max_leaves=20,
    )
)
def test_any_recipients_detail_makes_a_notice_or_is_skipped_never_an_error(detail: object) -> None:
    notice = document_notice(_data(recipients_detail=detail), restricted=False, public_url="https://s.example.org")
    assert notice is not None
    for shown in notice.details.values():
        assert shown.changes is None or len(shown.changes) <= 2000
