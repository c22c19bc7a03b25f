"""E-mail notices (pure composition): need-to-know content, headers that cannot be injected into, a stable
Message-ID, SMTP settings that refuse unsafe values, and a recipient's state in a campaign."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from services.core.settings import ConfigurationError, load_settings
from services.notifier.mail import MailConfig, compose, document_notice, message_id, recipients_of
from services.strategy_engine.documents import AckState, ack_state

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CONFIG = MailConfig(sender="smits@example.org", public_url="https://smits.example.org")
DOCUMENT = str(uuid.uuid4())
DATA = {
    "document_id": DOCUMENT,
    "version": 3,
    "kind": "strategy_plan",
    "title": "Project Falcon: acquiring Acme",
    "summary": "We buy Acme in Q2.",
    "recipients": ["ana@example.org"],
    "acknowledge_by": (NOW + timedelta(days=10)).isoformat(),
}


def parsed(raw: str) -> EmailMessage:
    message = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def rendered(*, restricted: bool, data: dict[str, object] = DATA) -> EmailMessage:
    notice = document_notice(data, restricted=restricted, public_url=CONFIG.public_url)
    assert notice is not None
    return parsed(compose(notice, delivery_id=uuid.uuid4(), recipient="ana@example.org", config=CONFIG, now=NOW))


def texts(message: EmailMessage) -> str:
    bodies = [message.get_body((kind,)) for kind in ("plain", "html")]
    return str(message["Subject"]) + "".join(str(b.get_content()) for b in bodies if b is not None)


def test_a_restricted_reviews_notice_names_no_title_kind_or_summary_but_links_the_document() -> None:
    shown = texts(rendered(restricted=True))
    for secret in ("Falcon", "Acme", "strategy plan", "strategy_plan"):
        assert secret not in shown
    assert f"https://smits.example.org/documents/{DOCUMENT}" in shown
    assert "need-to-know" in shown
    assert "version 3" in shown.lower()
    open_one = texts(rendered(restricted=False))
    assert "Project Falcon: acquiring Acme" in open_one
    assert "We buy Acme in Q2." in open_one


def test_a_title_cannot_add_headers_and_a_long_one_is_cut() -> None:
    message = rendered(restricted=False, data={**DATA, "title": "Plan\r\nBcc: victim@example.org\n" + "x" * 400})
    assert message["Bcc"] is None
    assert "\n" not in str(message["Subject"])
    assert len(str(message["Subject"])) <= 200


def test_the_message_id_is_derived_from_the_delivery_only() -> None:
    delivery = uuid.uuid4()
    assert message_id(delivery, "a@example.org") == message_id(delivery, "b@example.org")
    assert message_id(delivery, "a@example.org") == f"<{delivery.hex}.smits@example.org>"
    assert message_id(uuid.uuid4(), "a@example.org") != message_id(delivery, "a@example.org")


def test_recipients_are_addresses_each_once() -> None:
    assert recipients_of({"recipients": ["Ana@Example.org", "ana@example.org", "x", 3, "ben@example.org"]}) == [
        "ana@example.org",
        "ben@example.org",
    ]
    assert recipients_of({"recipients": "ana@example.org"}) == []


def test_an_event_without_a_document_gives_no_notice() -> None:
    for data in ({}, {"document_id": "nope", "version": 1}, {"document_id": DOCUMENT, "version": True}):
        assert document_notice(data, restricted=False, public_url=CONFIG.public_url) is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"smtp_host": "mail.example.org"}, "SMITS_MAIL_FROM is required"),
        ({"smtp_host": "mail.example.org", "mail_from": "s@example.org", "smtp_user": "u"}, "given together"),
        (
            {"smtp_host": "mail.example.org", "mail_from": "s@example.org", "smtp_user": "u", "smtp_password": "p"}
            | {"smtp_tls": "none"},
            "clear text",
        ),
        ({"smtp_tls": "ssl"}, "SMITS_SMTP_TLS"),
        ({"mail_from": "not an address"}, "SMITS_MAIL_FROM"),
    ],
)
def test_smtp_settings_refuse_unsafe_or_incomplete_values(changes: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load_settings(**changes)


def test_smtp_port_defaults_follow_the_tls_mode() -> None:
    ports = {tls: load_settings(smtp_tls=tls).smtp_port_or_default for tls in ("none", "starttls", "implicit")}
    assert ports == {"none": 25, "starttls": 587, "implicit": 465}
    assert load_settings(smtp_port=2525).smtp_port_or_default == 2525


def test_a_recipient_is_acknowledged_pending_or_overdue() -> None:
    due = NOW + timedelta(days=1)
    assert ack_state(acknowledged_at=None, due_at=due, now=NOW) is AckState.PENDING
    assert ack_state(acknowledged_at=None, due_at=due, now=due + timedelta(seconds=1)) is AckState.OVERDUE
    late = due + timedelta(days=2)
    assert ack_state(acknowledged_at=late, due_at=due, now=late) is AckState.ACKNOWLEDGED
