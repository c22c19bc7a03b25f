"""People sign in through a real OpenID Connect provider (deploy/oidc: mock-oauth2-server started by the
harness): the browser's redirects followed by an HTTP client end in a smits session for the provider's user with
the mapped roles; the provider's access tokens work on the API; tokens of another issuer, expired ones and ones
for another audience are 401."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from services.core.identity.audit import AuditRow
from services.core.settings import Settings
from tests.support.harness import Harness, smits

CLIENT_ID = "smits-web"
CLIENT_SECRET = "test-secret"  # the test provider's registration (deploy/oidc/config.json), not a secret
USER = "test.user@example.test"


@pytest.fixture
def oidc_settings(settings: Settings, oidc_issuer: str) -> Settings:
    return settings.model_copy(
        update={
            "oidc_issuer": oidc_issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            "oidc_role_map": {"smits-admins": "admin"},
            "public_url": "http://127.0.0.1:8000",
        }
    )


@pytest.fixture
async def provider_http() -> AsyncIterator[httpx.AsyncClient]:
    """The browser's side at the provider (a real HTTP client on loopback)."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def _browser_sign_in(app: Harness, browser: httpx.AsyncClient, provider: httpx.AsyncClient) -> httpx.Response:
    """What a browser does: smits → provider → back to smits' callback. Returns the callback's answer."""
    start = await browser.get("/auth/oidc/login", params={"next": "/v1/reviews"})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert "code_challenge_method=S256" in authorize
    at_provider = await provider.get(authorize)
    assert at_provider.status_code == 302, at_provider.text
    back = at_provider.headers["location"]
    assert back.startswith("http://127.0.0.1:8000/auth/oidc/callback?")
    return await browser.get(_path_of(back))


async def test_the_browser_flow_ends_in_a_session_for_the_providers_user_with_mapped_roles(
    oidc_settings: Settings, provider_http: httpx.AsyncClient
) -> None:
    async with smits(oidc_settings, ["engine"]) as app:
        async with httpx.AsyncClient(transport=app.transport, base_url="http://127.0.0.1:8000") as browser:
            callback = await _browser_sign_in(app, browser, provider_http)
            me = await browser.get("/v1/me")
            reviews = await browser.get("/v1/reviews")
            replay = await browser.get(_path_of(str(callback.request.url)))
            page = await browser.get("/auth/login")
        async with app.runtime.uow.begin() as session:
            logins = (await session.scalars(select(AuditRow).where(AuditRow.action == "auth.login"))).all()
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == "/v1/reviews"
    assert "httponly" in callback.headers["set-cookie"].lower()
    assert me.status_code == 200, me.text
    assert me.json()["email"] == USER
    assert me.json()["roles"] == ["admin", "strategy_manager"]  # payroll-clerks is no smits role: dropped
    assert me.json()["auth_method"] == "session"
    assert reviews.status_code == 200
    assert replay.status_code == 401  # a state is used once
    assert "/auth/oidc/login" in page.text
    assert [(row.method, row.outcome, row.principal) for row in logins] == [
        ("oidc", "ok", USER),
        ("oidc", "refused", f"oidc:{oidc_settings.oidc_issuer}"),
    ]


async def _signed_in_access_token(provider: httpx.AsyncClient, issuer: str) -> str:
    """An access token of an ordinary sign-in at the provider (another client of smits, say a script)."""
    redirect = "http://127.0.0.1:9/cb"
    authorize = httpx.URL(f"{issuer}/authorize").copy_merge_params(
        {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect, "scope": "openid"}
    )
    at_provider = await provider.get(authorize)
    code = httpx.URL(at_provider.headers["location"]).params["code"]
    response = await provider.post(
        f"{issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def _client_token(provider: httpx.AsyncClient, issuer: str, **form: str) -> str:
    response = await provider.post(
        f"{issuer}/token", data={"grant_type": "client_credentials", **form}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_provider_access_tokens_work_on_the_api_and_foreign_expired_or_misaddressed_ones_are_401(
    oidc_settings: Settings, provider_http: httpx.AsyncClient, oidc_issuer: str
) -> None:
    other_issuer = oidc_issuer.rsplit("/", 1)[0] + "/other"
    tokens = {
        "good": await _signed_in_access_token(provider_http, oidc_issuer),
        "other issuer": await _signed_in_access_token(provider_http, other_issuer),
        "expired": await _client_token(provider_http, oidc_issuer, audience=CLIENT_ID, expires="past"),
        "wrong audience": await _client_token(provider_http, oidc_issuer, audience="someone-else"),
    }
    async with smits(oidc_settings, ["engine"]) as app:
        answers = {
            name: await app.api.get("/v1/me", headers={"authorization": f"Bearer {token}"})
            for name, token in tokens.items()
        }
        write = await app.api.post(
            "/v1/org-units", json={"name": "from-a-token"}, headers={"authorization": f"Bearer {tokens['good']}"}
        )
    good = answers.pop("good")
    assert good.status_code == 200, good.text
    assert good.json()["email"] == USER
    assert good.json()["auth_method"] == "bearer_jwt"
    assert good.json()["roles"] == ["admin", "strategy_manager"]
    assert write.status_code == 201  # a bearer token needs no CSRF token: it is not ambient like a cookie
    reasons = {name: (answer.status_code, answer.json()["detail"]) for name, answer in answers.items()}
    assert {name: status for name, (status, _) in reasons.items()} == dict.fromkeys(answers, 401)
    assert "key the provider does not publish" in reasons["other issuer"][1]  # signed by the other issuer's keys
    assert "expired" in reasons["expired"][1]
    assert "aud" in reasons["wrong audience"][1]
    assert all(token not in str(reasons) for token in tokens.values())
