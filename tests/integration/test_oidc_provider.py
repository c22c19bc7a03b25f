"""The relying party against a real OpenID Connect provider (deploy/oidc: navikt's mock-oauth2-server).

How the tests get codes and tokens (deploy/oidc/config.json):
- sign-in: GET the authorization URL (the browser's part): the provider redirects back with a code at once
  and the tokens name `test-user` (email, name, roles smits-admins, strategy_manager, payroll-clerks);
  POSTing `username` and `claims` (JSON) to the same URL signs in as that user with those claims instead
  (users `signed-in-elsewhere` and `shared-token` get ID tokens for another audience, or for two).
- access tokens: the token endpoint with grant_type=client_credentials and `audience` (aud of the token);
  `expires=past` gives a token that expired in 2001, `iss=...` one signed with this issuer's key that names
  another issuer.
- another issuer: any other first path segment (`/other`) is an issuer with its own keys.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.core.identity.oidc import InvalidToken, OidcIdentity, OidcProvider, PendingLogin

CLIENT_ID = "smits-web"
CLIENT_SECRET = "test-secret"
REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"
ROLE_MAP = {"smits-admins": "admin", "approvers": "approver"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def provider(oidc_issuer: str, http: httpx.AsyncClient) -> OidcProvider:
    return OidcProvider(
        issuer=oidc_issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        roles_claim="roles",
        role_map=ROLE_MAP,
        http=http,
    )


async def _browser(
    http: httpx.AsyncClient, url: str, *, user: str | None = None, claims: Mapping[str, object] | None = None
) -> dict[str, str]:
    """What a browser does at the provider: the query of the redirect back to smits."""
    if user is None:
        response = await http.get(url)
    else:
        response = await http.post(url, data={"username": user, "claims": json.dumps(claims or {})})
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {name: values[0] for name, values in parse_qs(location.query).items()}


async def _sign_in(
    provider: OidcProvider,
    http: httpx.AsyncClient,
    *,
    user: str | None = None,
    claims: Mapping[str, object] | None = None,
) -> OidcIdentity:
    url, pending = await provider.login_url(redirect_uri=REDIRECT_URI, return_to="/reviews")
    return await provider.complete(pending=pending, params=await _browser(http, url, user=user, claims=claims))


async def _access_token(http: httpx.AsyncClient, issuer: str, **form: str) -> str:
    response = await http.post(
        f"{issuer}/token", data={"grant_type": "client_credentials", **form}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


async def _signed_in_access_token(http: httpx.AsyncClient, issuer: str) -> str:
    """The access token of an ordinary sign-in (code flow done by hand, as another client of smits would)."""
    authorize = httpx.URL(f"{issuer}/authorize").copy_merge_params(
        {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "scope": "openid"}
    )
    params = await _browser(http, str(authorize))
    response = await http.post(
        f"{issuer}/token",
        data={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def _parts(token: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = token.split(".")
    return _json(header), _json(payload), signature


def _json(segment: str) -> dict[str, object]:
    value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(value, dict)
    return value


def _segment(value: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(value)).encode()).rstrip(b"=").decode()


async def test_sign_in_gives_the_provider_identity_with_mapped_roles(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    identity = await _sign_in(provider, http)
    assert identity == OidcIdentity(
        issuer=oidc_issuer,
        subject="test-user",
        email="test.user@example.test",
        name="Test User",
        roles=frozenset({"admin", "strategy_manager"}),  # payroll-clerks is no smits role: dropped
    )


async def test_sign_in_as_another_user_with_roles_in_one_string(
    provider: OidcProvider, http: httpx.AsyncClient
) -> None:
    claims = {"email": "alice@example.test", "name": "Alice Approver", "roles": "viewer approvers root"}
    identity = await _sign_in(provider, http, user="alice", claims=claims)
    assert (identity.subject, identity.email, identity.name) == ("alice", "alice@example.test", "Alice Approver")
    assert identity.roles == {"viewer", "approver"}


async def test_the_authorization_url_asks_for_the_code_flow_with_pkce_state_and_nonce(
    provider: OidcProvider, oidc_issuer: str
) -> None:
    url, pending = await provider.login_url(redirect_uri=REDIRECT_URI, return_to="/reviews?id=1")
    _, second = await provider.login_url(redirect_uri=REDIRECT_URI)
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{oidc_issuer}/authorize"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(pending.code_verifier.encode()).digest()).rstrip(b"=")
    assert query["code_challenge"] == challenge.decode()
    assert query["code_challenge_method"] == "S256"
    assert (query["response_type"], query["client_id"], query["redirect_uri"]) == ("code", CLIENT_ID, REDIRECT_URI)
    assert "openid" in query["scope"].split()
    assert (query["state"], query["nonce"]) == (pending.state, pending.nonce)
    assert min(len(pending.code_verifier), len(pending.state), len(pending.nonce)) >= 43
    assert {pending.state, pending.nonce, pending.code_verifier}.isdisjoint(
        {second.state, second.nonce, second.code_verifier}
    )
    assert (pending.redirect_uri, pending.return_to) == (REDIRECT_URI, "/reviews?id=1")


async def test_return_to_elsewhere_becomes_the_home_page(provider: OidcProvider) -> None:
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example", "reviews"):
        _, pending = await provider.login_url(redirect_uri=REDIRECT_URI, return_to=elsewhere)
        assert pending.return_to == "/"


async def _answer(provider: OidcProvider, http: httpx.AsyncClient) -> tuple[PendingLogin, dict[str, str]]:
    url, pending = await provider.login_url(redirect_uri=REDIRECT_URI)
    return pending, await _browser(http, url)


async def test_an_answer_with_another_state_is_refused(provider: OidcProvider, http: httpx.AsyncClient) -> None:
    pending, params = await _answer(provider, http)
    with pytest.raises(InvalidToken, match="state"):
        await provider.complete(pending=pending, params={**params, "state": "forged"})
    other, _ = await _answer(provider, http)
    with pytest.raises(InvalidToken, match="state"):
        await provider.complete(pending=other, params=params)  # another sign-in's answer


async def test_the_code_verifier_is_sent_and_checked_by_the_provider(
    provider: OidcProvider, http: httpx.AsyncClient
) -> None:
    pending, params = await _answer(provider, http)
    wrong = dataclasses.replace(pending, code_verifier="x" * 64)
    with pytest.raises(InvalidToken, match="invalid_grant"):
        await provider.complete(pending=wrong, params=params)


async def test_a_code_is_redeemed_once(provider: OidcProvider, http: httpx.AsyncClient) -> None:
    pending, params = await _answer(provider, http)
    await provider.complete(pending=pending, params=params)
    with pytest.raises(InvalidToken, match="invalid_grant"):
        await provider.complete(pending=pending, params=params)


async def test_an_id_token_for_another_nonce_is_refused(provider: OidcProvider, http: httpx.AsyncClient) -> None:
    pending, params = await _answer(provider, http)
    with pytest.raises(InvalidToken, match="nonce"):
        await provider.complete(pending=dataclasses.replace(pending, nonce="replayed"), params=params)


async def test_an_error_answer_is_refused(provider: OidcProvider, http: httpx.AsyncClient) -> None:
    pending, _ = await _answer(provider, http)
    with pytest.raises(InvalidToken, match="access_denied"):
        await provider.complete(pending=pending, params={"state": pending.state, "error": "access_denied"})


async def test_an_id_token_for_another_client_is_refused(provider: OidcProvider, http: httpx.AsyncClient) -> None:
    with pytest.raises(InvalidToken, match="aud"):
        await _sign_in(provider, http, user="signed-in-elsewhere")  # the provider says aud: someone-else
    with pytest.raises(InvalidToken, match="azp"):
        await _sign_in(provider, http, user="shared-token")  # aud: [smits-web, someone-else], no azp


async def test_a_bearer_token_for_this_client_is_accepted(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    identity = await provider.verify_bearer(await _signed_in_access_token(http, oidc_issuer))
    assert (identity.subject, identity.email) == ("test-user", "test.user@example.test")
    assert identity.roles == {"admin", "strategy_manager"}
    service = await provider.verify_bearer(await _access_token(http, oidc_issuer, audience=CLIENT_ID))
    assert (service.issuer, service.subject, service.roles) == (oidc_issuer, CLIENT_ID, frozenset())


async def test_the_audience_setting_decides_which_bearer_tokens_are_accepted(
    oidc_issuer: str, http: httpx.AsyncClient
) -> None:
    api = OidcProvider(
        issuer=oidc_issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        roles_claim="roles",
        role_map={},
        audience="smits-api",
        http=http,
    )
    assert (await api.verify_bearer(await _access_token(http, oidc_issuer, audience="smits-api"))).subject == CLIENT_ID
    with pytest.raises(InvalidToken, match="aud"):
        await api.verify_bearer(await _access_token(http, oidc_issuer, audience=CLIENT_ID))


async def test_a_bearer_token_for_another_audience_is_refused(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    with pytest.raises(InvalidToken, match="aud"):
        await provider.verify_bearer(await _access_token(http, oidc_issuer, audience="someone-else"))


async def test_a_bearer_token_from_another_issuer_is_refused(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    other_issuer = oidc_issuer.rsplit("/", 1)[0] + "/other"
    token = await _access_token(http, other_issuer, scope=CLIENT_ID)  # aud smits-web, iss .../other, its own key
    assert _parts(token)[1]["aud"] == CLIENT_ID
    with pytest.raises(InvalidToken):
        await provider.verify_bearer(token)
    named_other = await _access_token(http, oidc_issuer, iss=other_issuer)  # this issuer's key, names the other
    assert _parts(named_other)[1]["iss"] == other_issuer
    with pytest.raises(InvalidToken, match="iss"):
        await provider.verify_bearer(named_other)


async def test_an_expired_bearer_token_is_refused(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    token = await _access_token(http, oidc_issuer, audience=CLIENT_ID, expires="past")
    with pytest.raises(InvalidToken, match="expired"):
        await provider.verify_bearer(token)


async def test_a_tampered_bearer_token_is_refused(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    token = await _access_token(http, oidc_issuer, audience=CLIENT_ID)
    await provider.verify_bearer(token)
    header, claims, signature = _parts(token)
    forged = f"{_segment(header)}.{_segment({**claims, 'roles': ['admin']})}.{signature}"
    with pytest.raises(InvalidToken, match="signature") as refused:
        await provider.verify_bearer(forged)
    assert signature not in str(refused.value)


async def test_a_token_signed_with_a_key_the_provider_does_not_hold_is_refused(
    provider: OidcProvider, http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    valid = await _access_token(http, oidc_issuer, audience=CLIENT_ID)
    header, claims, _ = _parts(valid)
    impostor = RSAKey.generate_key(2048)
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, impostor)  # the provider's kid
    with pytest.raises(InvalidToken, match="signature"):
        await provider.verify_bearer(forged)
    unsigned = f"{_segment({'alg': 'none', 'kid': header['kid']})}.{_segment(claims)}."
    with pytest.raises(InvalidToken, match="algorithm"):
        await provider.verify_bearer(unsigned)
