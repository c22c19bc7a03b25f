"""Pure identity rules: scopes never exceed roles, clearance tokens, safe redirects, e-mail addresses."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from hypothesis import given
from hypothesis import strategies as st

from services.core.identity.model import (
    EMAIL_PATTERN,
    ROLE_SCOPES,
    Role,
    Scope,
    clearance_tokens,
    effective_scopes,
    granted,
    normal_email,
)
from services.core.identity.routes import LANDING, safe_next

roles = st.frozensets(st.sampled_from(list(Role)))
scopes = st.frozensets(st.sampled_from(list(Scope)))


@given(credential=scopes, held=roles)
def test_a_persons_credential_never_does_more_than_their_roles(
    credential: frozenset[Scope], held: frozenset[Role]
) -> None:
    effective = effective_scopes(credential, held)
    assert effective <= granted(held)
    assert effective <= (frozenset(Scope) if Scope.ADMIN in credential else credential)


@given(credential=scopes)
def test_a_service_account_has_exactly_its_keys_scopes(credential: frozenset[Scope]) -> None:
    expected = frozenset(Scope) if Scope.ADMIN in credential else credential
    assert effective_scopes(credential, None) == expected


def test_only_admins_hold_admin_and_subscriptions_and_triggers() -> None:
    for role, allowed in ROLE_SCOPES.items():
        privileged = {Scope.ADMIN, Scope.SUBSCRIPTIONS_ADMIN, Scope.TRIGGERS_WRITE} & allowed
        assert bool(privileged) == (role is Role.ADMIN)
    assert effective_scopes(None, {Role.VIEWER}) == {Scope.REVIEWS_READ}


@given(held=roles, units=st.frozensets(st.text(min_size=1, max_size=20), max_size=5), cleared=st.booleans())
def test_clearance_tokens_name_the_person_their_roles_and_units(
    held: frozenset[Role], units: frozenset[str], cleared: bool
) -> None:
    tokens = clearance_tokens(email="Ana@Corp.example", roles=held, units=units, cleared=cleared)
    assert "principal:ana@corp.example" in tokens
    assert {f"role:{r.value}" for r in held} <= tokens
    assert {f"unit:{u}" for u in units} <= tokens
    assert ("*" in tokens) == cleared


@given(st.text(max_size=200))
def test_a_sign_in_never_redirects_off_site(target: str) -> None:
    landing = safe_next(target)
    assert landing in (target, LANDING)
    resolved = urljoin("https://smits.corp.example/auth/login", landing)
    assert resolved.startswith("https://smits.corp.example/")


@given(st.emails())
def test_every_ordinary_address_is_accepted_and_normalised(address: str) -> None:
    if len(address.split("@")[0]) <= 64 and not re.search(r"[\s<>(),;:\"\[\]]", address.split("@")[0]):
        assert re.match(EMAIL_PATTERN, address)
    assert normal_email(f"  {address.upper()} ") == address.lower()
