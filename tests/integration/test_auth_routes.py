"""Every route in the OpenAPI document is protected: no key → 401, a key without the scope → 403.

Routes are enumerated from the live OpenAPI spec, so a new route cannot slip through unprotected.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from services.core.auth import Scope, create_key
from services.core.settings import Settings
from tests.support.harness import smits

PUBLIC = {"/healthz", "/readyz", "/metrics", "/auth/login", "/v1/acknowledge-link"}
"""`/v1/acknowledge-link`: its signed token is the credential (tested in both test_campaigns.py)."""
SIGNED_IN = {"/v1/me", "/auth/logout"}  # any proven caller
PEOPLE_ONLY = {"/v1/me/preferences"}  # a person's own settings: no API key (a service account) has any
ADMIN_ONLY = ("/v1/users", "/v1/org-units", "/v1/keys", "/v1/audit", "/v1/dead-letters")
FILLER = str(uuid.uuid4())


def _routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    for path, operations in spec["paths"].items():
        if path in PUBLIC or path in SIGNED_IN:
            continue
        concrete = re.sub(r"\{[^}]+\}", FILLER, path)
        routes.extend(
            (method.upper(), concrete) for method in operations if method in {"get", "post", "put", "patch", "delete"}
        )
    return routes


async def test_every_route_needs_a_key_with_exactly_one_scope_besides_admin(settings: Settings) -> None:
    async with smits(settings) as app:
        spec = (await app.api.get("/openapi.json")).json()
        keys: dict[Scope, str] = {}
        async with app.runtime.uow.begin() as session:
            for scope in Scope:
                keys[scope] = await create_key(session, name=f"only {scope}", scopes=[scope])
        routes = _routes(spec)
        results: dict[tuple[str, str], dict[str, int]] = {}
        for method, path in routes:
            outcome: dict[str, int] = {}
            anonymous = await app.api.request(method, path, headers={"authorization": ""}, json={})
            outcome["none"] = anonymous.status_code
            assert anonymous.headers["content-type"] == "application/problem+json", (method, path)
            wrong = await app.api.request(method, path, headers={"authorization": "Bearer smits_not-a-key"}, json={})
            outcome["unknown"] = wrong.status_code
            for scope, key in keys.items():
                response = await app.api.request(method, path, headers={"authorization": f"Bearer {key}"}, json={})
                outcome[scope.value] = response.status_code
            results[(method, path)] = outcome
    assert len(routes) >= 20
    for route, outcome in results.items():
        assert outcome["none"] == 401, route
        assert outcome["unknown"] == 401, route
        if route[1] in PEOPLE_ONLY:
            assert {outcome[s.value] for s in Scope} == {403}, (route, outcome)
            continue
        assert outcome[Scope.ADMIN.value] not in (401, 403), route
        passing = [s.value for s in Scope if s is not Scope.ADMIN and outcome[s.value] not in (401, 403)]
        refused = [s.value for s in Scope if s is not Scope.ADMIN and outcome[s.value] == 403]
        if route[1].startswith(ADMIN_ONLY):
            assert passing == [], (route, outcome)
            assert len(refused) == len(Scope) - 1, (route, outcome)
        else:
            assert len(passing) == 1, (route, outcome)
            assert len(refused) == len(Scope) - 2, (route, outcome)


async def test_the_401_says_how_to_authenticate(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        response = await app.api.get("/v1/reviews", headers={"authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert isinstance(response, httpx.Response)
