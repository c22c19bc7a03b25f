"""Signing (checked by the standardwebhooks library), event matching and the egress address policy."""

from __future__ import annotations

import ipaddress
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notifier.egress import is_permitted
from services.notifier.matching import type_matches
from services.notifier.signing import generate_secret, signature_header


def test_our_signature_verifies_with_the_standardwebhooks_library() -> None:
    secret = generate_secret()
    body = b'{"type":"review.opened","timestamp":"2026-11-22T00:00:00+00:00","data":{}}'
    now = int(time.time())  # the library refuses timestamps more than 5 minutes off
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret], msg_id="msg_1", timestamp=now, body=body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "review.opened"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_secrets_carry_at_least_24_random_bytes() -> None:
    import base64

    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert generate_secret() != secret


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        ([], "review.opened", True),
        (["*"], "document.acknowledgement_due", True),
        (["review.*"], "review.opened", True),
        (["review.*"], "document.acknowledgement_due", False),
        (["review.opened"], "review.opened", True),
        (["review.opened"], "review.opened_again", False),
        (["review.open*"], "review.opened", False),
    ],
)
def test_type_matching(patterns: list[str], event_type: str, expected: bool) -> None:
    assert type_matches(patterns, event_type) is expected


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "64:ff9b::a9fe:a9fe",
        "127.0.0.1",
        "100.64.0.1",
        "192.168.1.1",
        "224.0.0.1",
        "::ffff:10.0.0.1",
        "2002:a00:1::",
        "fd00::1",
        "0.0.0.0",
    ],
)
def test_non_global_addresses_are_refused_without_an_allowlist(address: str) -> None:
    assert not is_permitted(ipaddress.ip_address(address), [])


def test_allowlist_admits_a_private_range_and_global_addresses_pass() -> None:
    allow = [ipaddress.ip_network("127.0.0.0/8")]
    assert is_permitted(ipaddress.ip_address("127.0.0.1"), allow)
    assert not is_permitted(ipaddress.ip_address("10.0.0.1"), allow)
    assert is_permitted(ipaddress.ip_address("93.184.216.34"), [])
