"""Review rights (pure): who steers, edits, approves and acknowledges, and that every refusal says why."""

from __future__ import annotations

import pytest

from services.core.errors import Forbidden, Invalid
from services.core.identity.model import AuthMethod, Caller, PrincipalKind, Role
from services.strategy_engine import rights


def _person(email: str, *roles: Role) -> Caller:
    return Caller(
        principal_id=None,
        kind=PrincipalKind.PERSON,
        name=email,
        email=email,
        roles=frozenset(roles),
        scopes=frozenset(),
        method=AuthMethod.API_KEY,
    )


SERVICE = Caller(
    principal_id=None,
    kind=PrincipalKind.SERVICE,
    name="grc-sync",
    email=None,
    roles=frozenset(),
    scopes=frozenset(),
    method=AuthMethod.API_KEY,
)
MANAGER = _person("m@example.org", Role.STRATEGY_MANAGER)
OWNER = _person("o@example.org", Role.CONTRIBUTOR)
CONTRIBUTOR = _person("c@example.org", Role.CONTRIBUTOR)
APPROVER = _person("a@example.org", Role.APPROVER)
ADMIN = _person("admin@example.org", Role.ADMIN)


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [(MANAGER, True), (OWNER, True), (SERVICE, True), (CONTRIBUTOR, False), (APPROVER, False), (ADMIN, False)],
)
def test_the_owner_and_strategy_managers_steer(caller: Caller, allowed: bool) -> None:
    if allowed:
        rights.steer(caller, review="R", owner="O@Example.org")
    else:
        with pytest.raises(Forbidden, match="only its owner"):
            rights.steer(caller, review="R", owner="O@Example.org")


@pytest.mark.parametrize(
    ("caller", "in_unit", "allowed"),
    [
        (MANAGER, False, True),
        (OWNER, False, True),
        (CONTRIBUTOR, True, True),
        (CONTRIBUTOR, False, False),
        (APPROVER, True, False),  # in the unit, but not a contributor
    ],
)
def test_contributors_of_the_unit_edit(caller: Caller, in_unit: bool, allowed: bool) -> None:
    def edit() -> None:
        rights.edit(caller, review="R", owner="o@example.org", unit="bu-1", in_unit=in_unit)

    if allowed:
        edit()
    else:
        with pytest.raises(Forbidden, match="contributor of org unit 'bu-1'"):
            edit()


def test_an_approver_approves_only_as_themself_when_named() -> None:
    assert rights.approver(APPROVER, named=["A@example.org"], version=2) == "a@example.org"
    with pytest.raises(Forbidden, match="not an approver named on version 2"):
        rights.approver(APPROVER, named=["b@example.org"], version=2)
    with pytest.raises(Forbidden, match="does not hold the approver role"):
        rights.approver(MANAGER, named=["m@example.org"], version=2)
    with pytest.raises(Forbidden, match="no person"):
        rights.approver(SERVICE, named=["service:grc-sync"], version=2)


def test_a_recipient_acknowledges_as_themself_and_an_admin_only_with_a_reason() -> None:
    assert rights.recipient(CONTRIBUTOR, on_behalf_of=None, reason=None) == "c@example.org"
    assert rights.recipient(ADMIN, on_behalf_of="C@example.org", reason="paper copy") == "c@example.org"
    with pytest.raises(Invalid, match="needs a 'reason'"):
        rights.recipient(ADMIN, on_behalf_of="c@example.org", reason=" ")
    with pytest.raises(Forbidden, match="only an admin"):
        rights.recipient(MANAGER, on_behalf_of="c@example.org", reason="r")
    with pytest.raises(Invalid, match="only with 'on_behalf_of'"):
        rights.recipient(CONTRIBUTOR, on_behalf_of=None, reason="r")
    with pytest.raises(Forbidden, match="no person"):
        rights.recipient(SERVICE, on_behalf_of=None, reason=None)


def test_people_are_named_by_e_mail() -> None:
    assert rights.people([" CIO@Example.org "], field="approvers.names") == ["cio@example.org"]
    with pytest.raises(Invalid, match="'cio' is not an e-mail address"):
        rights.people(["cio"], field="approvers.names")
