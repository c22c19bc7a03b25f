"""Signing (checked by the standardwebhooks library), event matching and the egress address policy."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
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


@pytest.mark.parametrize(
    "address",
    [
        "::127.0.0.1",  # IPv4-compatible loopback
        "::10.0.0.1",
        "::169.254.169.254",
        "::ffff:0:127.0.0.1",  # IPv4-translated
        "::ffff:0:192.168.1.1",
        "64:ff9b:1::10.0.0.1",  # NAT64 local-use prefix
        "fec0::1",  # deprecated site-local
        "fec0:1:2:3::8.8.8.8",
        "feff:ffff::1",
        "3fff::1",  # documentation (some Python versions call it global)
        "5f00::1",  # SRv6 segment identifiers
        "192.88.99.1",  # deprecated 6to4 relay anycast
    ],
)
def test_deprecated_and_embedding_ipv6_forms_of_non_global_addresses_are_refused(address: str) -> None:
    assert not is_permitted(ipaddress.ip_address(address), [])


def _embeddings(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """Every IPv6 form that carries `v4` in a way a dual stack, translator or 6to4 relay may reach it."""
    low = int(v4)
    return [
        ipaddress.IPv6Address(low),  # ::a.b.c.d, IPv4-compatible
        ipaddress.IPv6Address((0xFFFF << 32) | low),  # ::ffff:a.b.c.d, IPv4-mapped
        ipaddress.IPv6Address((0xFFFF << 48) | low),  # ::ffff:0:a.b.c.d, IPv4-translated
        ipaddress.IPv6Address((0x0064FF9B << 96) | low),  # 64:ff9b::a.b.c.d, NAT64
        ipaddress.IPv6Address((0x0064FF9B0001 << 80) | low),  # 64:ff9b:1::a.b.c.d, NAT64 local use
        ipaddress.IPv6Address((0x2002 << 112) | (low << 80)),  # 2002:a.b.c.d::, 6to4
    ]


@given(st.ip_addresses(v=4))
def test_every_ipv6_embedding_of_an_ipv4_address_is_judged_by_that_address(v4: ipaddress.IPv4Address) -> None:
    for allow in ([], [ipaddress.ip_network("127.0.0.0/8")]):
        verdict = is_permitted(v4, allow)
        for form in _embeddings(v4):
            assert is_permitted(form, allow) == verdict, form


@given(st.integers(min_value=0, max_value=2**118 - 1))
def test_nothing_in_the_site_local_range_is_permitted(suffix: int) -> None:
    assert not is_permitted(ipaddress.IPv6Address((0xFEC0 << 112) | suffix), [])
