"""The relying party's pure parts (role mapping, return paths, settings) and its key handling against an
in-process provider (httpx.MockTransport: no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.core.identity.oidc import (
    JWKS_REFETCH_INTERVAL_S,
    MAX_ROLES,
    InvalidToken,
    OidcProvider,
    ProviderUnavailable,
    map_roles,
    provider_from_settings,
    safe_return_to,
)
from services.core.settings import ConfigurationError, load_settings

ISSUER = "https://idp.example/realms/smits"


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (["viewer", "approver"], {"viewer", "approver"}),
        ("viewer  admins\tcontributor", {"viewer", "admin", "contributor"}),
        (["admins", "payroll", "root", "ADMIN"], {"admin"}),  # unmapped names that are no smits role: dropped
        (["strategy_manager", 7, None, {"role": "admin"}], {"strategy_manager"}),
        (["x" * 300], set()),
        ("", set()),
        (None, set()),
        (42, set()),
        ({"admin": True}, set()),
    ],
)
def test_roles_are_mapped_to_smits_roles(claim: object, expected: set[str]) -> None:
    assert map_roles(claim, {"admins": "admin"}) == expected


def test_a_mapping_wins_over_a_same_named_smits_role() -> None:
    assert map_roles(["viewer"], {"viewer": "admin"}) == {"admin"}


def test_too_many_roles_are_refused() -> None:
    with pytest.raises(InvalidToken, match="roles"):
        map_roles(["viewer"] * (MAX_ROLES + 1), {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/reviews?id=3#top", "/reviews?id=3#top"),
        ("/", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/a\\b", "/"),
        ("/a\r\nSet-Cookie: x", "/"),
        ("reviews", "/"),
        ("", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_return_to_stays_on_this_site(value: str, expected: str) -> None:
    assert safe_return_to(value) == expected


def test_role_map_must_name_smits_roles() -> None:
    with pytest.raises(ValueError, match="superuser"):
        OidcProvider(issuer=ISSUER, client_id="c", client_secret=None, roles_claim="roles", role_map={"a": "superuser"})


def test_settings_need_a_client_id_with_an_issuer() -> None:
    with pytest.raises(ConfigurationError, match="SMITS_OIDC_CLIENT_ID is required"):
        load_settings(oidc_issuer=ISSUER)
    assert load_settings(oidc_issuer=None).oidc_issuer is None


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"oidc_issuer": "http://idp.example/smits", "oidc_client_id": "c"}, "SMITS_OIDC_ISSUER"),
        ({"oidc_issuer": "idp.example", "oidc_client_id": "c"}, "SMITS_OIDC_ISSUER"),
        ({"oidc_issuer": ISSUER + "?x=1", "oidc_client_id": "c"}, "SMITS_OIDC_ISSUER"),
        ({"oidc_role_map": {"admins": "root"}}, "SMITS_OIDC_ROLE_MAP"),
        ({"oidc_roles_claim": ""}, "SMITS_OIDC_ROLES_CLAIM"),
    ],
)
def test_settings_refuse_bad_oidc_values(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(**overrides)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITS_OIDC_ISSUER", "http://127.0.0.1:28080/smits")
    monkeypatch.setenv("SMITS_OIDC_CLIENT_ID", "smits-web")
    monkeypatch.setenv("SMITS_OIDC_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("SMITS_OIDC_ROLE_MAP", '{"smits-admins": "admin"}')
    settings = load_settings()
    assert settings.oidc_role_map == {"smits-admins": "admin"}
    assert (settings.oidc_roles_claim, settings.oidc_audience) == ("roles", None)
    assert "s3cret" not in repr(settings)
    provider = provider_from_settings(settings)
    assert provider is not None
    assert (provider.issuer, provider.client_id, provider.audience) == (settings.oidc_issuer, "smits-web", "smits-web")
    monkeypatch.delenv("SMITS_OIDC_ISSUER")
    assert provider_from_settings(load_settings()) is None


class FakeProvider:
    """Discovery and JWKS of ISSUER, in process; keys can be rotated and fetches are counted."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.jwks_fetches = 0
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/auth",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/certs",
        }
        self.jwks_body: Callable[[], bytes] = lambda: json.dumps(
            {"keys": [key.as_dict(private=False) for key in self.keys]}
        ).encode()

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=self.discovery)
        if request.url.path.endswith("/certs"):
            self.jwks_fetches += 1
            return httpx.Response(200, content=self.jwks_body())
        return httpx.Response(404)

    def token(self, key: RSAKey, now: float, **claims: Any) -> str:
        body = {"iss": ISSUER, "aud": "smits", "sub": "u1", "iat": int(now), "exp": int(now) + 300, **claims}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(fake: FakeProvider, clock: Clock) -> OidcProvider:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    return OidcProvider(
        issuer=ISSUER, client_id="smits", client_secret=None, roles_claim="roles", role_map={}, http=http, clock=clock
    )


async def test_a_rotated_key_is_fetched_once_and_unknown_keys_are_rate_limited(
    fake: FakeProvider, clock: Clock, provider: OidcProvider
) -> None:
    assert (await provider.verify_bearer(fake.token(fake.keys[0], clock.now))).subject == "u1"
    await provider.verify_bearer(fake.token(fake.keys[0], clock.now))
    assert fake.jwks_fetches == 1  # cached

    clock.now += JWKS_REFETCH_INTERVAL_S
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    fake.keys.append(rotated)
    assert (await provider.verify_bearer(fake.token(rotated, clock.now, sub="u2"))).subject == "u2"
    assert fake.jwks_fetches == 2  # the unknown kid fetched the keys again

    stranger = RSAKey.generate_key(2048, parameters={"kid": "k3"})
    for _ in range(5):
        with pytest.raises(InvalidToken, match="does not publish"):
            await provider.verify_bearer(fake.token(stranger, clock.now))
    assert fake.jwks_fetches == 2  # within the interval: no fetch per forged kid

    clock.now += JWKS_REFETCH_INTERVAL_S
    fake.keys.append(stranger)
    await provider.verify_bearer(fake.token(stranger, clock.now))
    assert fake.jwks_fetches == 3


async def test_time_claims_use_the_clock_with_a_minute_of_leeway(
    fake: FakeProvider, clock: Clock, provider: OidcProvider
) -> None:
    token = fake.token(fake.keys[0], clock.now)  # exp: now + 300
    clock.now += 300 + 59
    await provider.verify_bearer(token)
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        await provider.verify_bearer(token)
    with pytest.raises(InvalidToken, match="nbf"):
        await provider.verify_bearer(fake.token(fake.keys[0], clock.now, nbf=int(clock.now) + 120))


async def test_claims_are_bounded_and_unverified_emails_dropped(
    fake: FakeProvider, clock: Clock, provider: OidcProvider
) -> None:
    key = fake.keys[0]
    identity = await provider.verify_bearer(fake.token(key, clock.now, email="a@example.test", email_verified=False))
    assert identity.email is None
    with pytest.raises(InvalidToken, match="name"):
        await provider.verify_bearer(fake.token(key, clock.now, name="n" * 1000))
    with pytest.raises(InvalidToken, match="subject"):
        await provider.verify_bearer(fake.token(key, clock.now, sub="s" * 256))
    with pytest.raises(InvalidToken, match="longer than"):
        await provider.verify_bearer(fake.token(key, clock.now, padding="p" * 20_000))
    with pytest.raises(InvalidToken, match="not a signed JWT"):
        await provider.verify_bearer("not-a-token")


async def test_a_nested_roles_claim_is_read(fake: FakeProvider, clock: Clock) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    keycloak = OidcProvider(
        issuer=ISSUER,
        client_id="smits",
        client_secret=None,
        roles_claim="realm_access.roles",
        role_map={"smits-admin": "admin"},
        http=http,
        clock=clock,
    )
    token = fake.token(fake.keys[0], clock.now, realm_access={"roles": ["smits-admin", "offline_access"]})
    assert (await keycloak.verify_bearer(token)).roles == {"admin"}


async def test_a_discovery_document_of_another_issuer_is_refused(fake: FakeProvider, provider: OidcProvider) -> None:
    fake.discovery["issuer"] = "https://attacker.example"
    with pytest.raises(ProviderUnavailable, match="another issuer"):
        await provider.login_url(redirect_uri="https://smits.example/cb")


async def test_an_oversized_key_set_is_refused(fake: FakeProvider, clock: Clock, provider: OidcProvider) -> None:
    fake.jwks_body = lambda: b'{"keys": [' + b" " * 300_000 + b"]}"
    with pytest.raises(ProviderUnavailable, match="more than"):
        await provider.verify_bearer(fake.token(fake.keys[0], clock.now))


async def test_a_claim_named_with_dots_is_read_as_named(fake: FakeProvider, clock: Clock) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    auth0 = OidcProvider(
        issuer=ISSUER,
        client_id="smits",
        client_secret=None,
        roles_claim="https://smits.example/roles",
        role_map={},
        http=http,
        clock=clock,
    )
    token = fake.token(fake.keys[0], clock.now, **{"https://smits.example/roles": ["approver"]})
    assert (await auth0.verify_bearer(token)).roles == {"approver"}


async def test_a_failed_first_key_fetch_is_retried_at_once(
    fake: FakeProvider, clock: Clock, provider: OidcProvider
) -> None:
    fake.jwks_body = lambda: b"<html>bad gateway</html>"
    with pytest.raises(ProviderUnavailable, match="key set"):
        await provider.verify_bearer(fake.token(fake.keys[0], clock.now))
    fake.jwks_body = lambda: json.dumps({"keys": [key.as_dict(private=False) for key in fake.keys]}).encode()
    assert (await provider.verify_bearer(fake.token(fake.keys[0], clock.now))).subject == "u1"


def test_a_role_map_that_is_not_json_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITS_OIDC_ROLE_MAP", "{admins: admin}")
    with pytest.raises(ConfigurationError, match="SMITS_OIDC_ROLE_MAP: is not valid JSON") as refused:
        load_settings()
    assert "admins" not in str(refused.value)
