"""Sign-in, sessions, CSRF, owned keys and the people API, over HTTP on real Postgres (and Kafka for the app)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http.cookies import SimpleCookie

import httpx
from sqlalchemy import select

from services.core.identity import audit, passwords, store
from services.core.identity.audit import AuditRow
from services.core.identity.model import Role, Scope
from services.core.identity.routes import LANDING
from services.core.settings import Settings
from tests.support.harness import Harness, smits

PASSWORD = "correct horse battery staple"


async def _person(app: Harness, email: str, *roles: Role, password: str | None = PASSWORD) -> None:
    async with app.runtime.uow.begin() as session:
        await store.create_person(
            session,
            email=email,
            name=email.split("@")[0],
            roles=roles,
            password_hash=passwords.hash_password(password) if password else None,
            now=datetime.now(UTC),
        )


@asynccontextmanager
async def _browser(app: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials of its own (cookies only), like a browser."""
    async with httpx.AsyncClient(transport=app.transport, base_url="http://127.0.0.1:8000") as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Form sign-in; returns the session's CSRF token (from /v1/me)."""
    response = await client.post("/auth/login", data={"email": email, "password": password, "next": "/reviews"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/reviews"
    me = await client.get("/v1/me")
    assert me.status_code == 200, me.text
    token = me.json()["csrf_token"]
    assert isinstance(token, str)
    assert len(token) > 20
    return token


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


async def test_local_sign_in_gives_an_httponly_samesite_session_whose_me_is_the_person(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "Ana@Corp.example", Role.STRATEGY_MANAGER, Role.APPROVER)
        async with _browser(app) as browser:
            response = await browser.post("/auth/login", data={"email": "ana@corp.example", "password": PASSWORD})
            assert response.status_code == 303
            morsel = _set_cookie(response)["smits_session"]
            assert morsel["httponly"] is True
            assert morsel["samesite"].lower() == "lax"
            assert not morsel["secure"]  # plain HTTP on loopback (SMITS_PUBLIC_URL default): the demo
            me = (await browser.get("/v1/me")).json()
    assert me["email"] == "ana@corp.example"
    assert me["roles"] == ["approver", "strategy_manager"]
    assert me["auth_method"] == "session"
    assert "reviews:write" in me["scopes"]
    assert "admin" not in me["scopes"]


async def test_the_session_cookie_is_secure_when_smits_is_not_on_loopback_http(settings: Settings) -> None:
    secure = settings.model_copy(update={"public_url": "https://smits.corp.example"})
    async with smits(secure, ["engine"]) as app:
        await _person(app, "ana@corp.example", Role.VIEWER)
        async with _browser(app) as browser:
            response = await browser.post("/auth/login", data={"email": "ana@corp.example", "password": PASSWORD})
    assert response.status_code == 303
    assert _set_cookie(response)["smits_session"]["secure"] is True


async def test_a_cookie_authenticated_write_without_the_csrf_token_is_403(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "ana@corp.example", Role.STRATEGY_MANAGER)
        async with _browser(app) as browser:
            token = await _sign_in(browser, "ana@corp.example")
            missing = str(uuid.uuid4())
            without = await browser.patch(f"/v1/reviews/{missing}", json={"title": "x"})
            wrong = await browser.patch(f"/v1/reviews/{missing}", json={"title": "x"}, headers={"x-csrf-token": "no"})
            with_token = await browser.patch(
                f"/v1/reviews/{missing}", json={"title": "x"}, headers={"x-csrf-token": token}
            )
            reads = await browser.get("/v1/reviews")  # a read needs no token
            logout_without = await browser.post("/auth/logout")
            logout = await browser.post("/auth/logout", headers={"x-csrf-token": token})
            after = await browser.get("/v1/me")
    assert without.status_code == 403
    assert "CSRF" in without.json()["detail"]
    assert wrong.status_code == 403
    assert with_token.status_code == 404  # past the CSRF check: the review does not exist
    assert reads.status_code == 200
    assert logout_without.status_code == 403
    assert logout.status_code == 204
    assert after.status_code == 401


async def test_wrong_passwords_are_401_audited_and_throttled(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "ana@corp.example", Role.VIEWER)
        async with _browser(app) as browser:
            unknown = await browser.post("/auth/login", json={"email": "who@corp.example", "password": PASSWORD})
            wrong = await browser.post("/auth/login", json={"email": "ana@corp.example", "password": "nope"})
            form = await browser.post("/auth/login", data={"email": "ana@corp.example", "password": "nope"})
            page = await browser.get(form.headers["location"])
            statuses = [
                (await browser.post("/auth/login", data={"email": "ana@corp.example", "password": "nope"})).status_code
                for _ in range(12)
            ]
            right_but_throttled = await browser.post(
                "/auth/login", data={"email": "ana@corp.example", "password": PASSWORD}
            )
        async with app.runtime.uow.begin() as session:
            refused = (
                await session.scalars(
                    select(AuditRow).where(AuditRow.action == "auth.login", AuditRow.outcome == "refused")
                )
            ).all()
            count, broken = await audit.verify(session)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]  # no hint which of the two was wrong
    assert form.status_code == 303  # a browser goes back to the form, which says what went wrong
    assert form.headers["location"].startswith("/auth/login?failed=true")
    assert "wrong" in page.text
    assert "set-cookie" not in form.headers
    assert 429 in statuses
    assert right_but_throttled.status_code == 429
    assert {row.principal for row in refused} == {"who@corp.example", "ana@corp.example"}
    assert len(refused) >= 3
    assert broken is None
    assert count >= len(refused)


async def test_sign_in_never_redirects_off_site(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "ana@corp.example", Role.VIEWER)
        async with _browser(app) as browser:
            locations = []
            for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
                response = await browser.post(
                    "/auth/login", data={"email": "ana@corp.example", "password": PASSWORD, "next": target}
                )
                locations.append(response.headers["location"])
    assert locations == [LANDING] * 4


async def test_idle_and_absolute_expiry_end_a_session(settings: Settings) -> None:
    window = 3.0  # long enough to sign in and be seen on a loaded machine, short enough to wait out
    for update in ({"session_idle_s": window}, {"session_absolute_s": window}):
        email = f"ana-{next(iter(update))}@corp.example"
        async with smits(settings.model_copy(update=update), ["engine"]) as app:
            await _person(app, email, Role.VIEWER)
            async with _browser(app) as browser:
                signed_in = await browser.post("/auth/login", data={"email": email, "password": PASSWORD})
                during = await browser.get("/v1/me")
                token = _set_cookie(signed_in)["smits_session"].value
                await asyncio.sleep(window + 0.5)
            async with _browser(app) as replayed:  # the cookie sent as is: the server must refuse it itself
                after = await replayed.get("/v1/me", headers={"cookie": f"smits_session={token}"})
        assert signed_in.status_code == 303, update
        assert during.status_code == 200, update
        assert after.status_code == 401, update
        assert "sign in again" in after.json()["detail"]


async def test_a_key_acts_as_its_owner_within_their_roles_and_revoked_keys_stop_at_once(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        viewer = await app.person("vic@corp.example", Role.VIEWER, scopes=[Scope.REVIEWS_READ, Scope.REVIEWS_WRITE])
        me = (await viewer.get("/v1/me")).json()
        write = await viewer.patch(f"/v1/reviews/{uuid.uuid4()}", json={"title": "x"})
        read = await viewer.get("/v1/reviews")
        keys = (await app.api.get("/v1/keys")).json()
        mine = next(key for key in keys if key["owner"] == "vic@corp.example")
        revoked = await app.api.delete(f"/v1/keys/{mine['id']}")
        again = await app.api.delete(f"/v1/keys/{mine['id']}")
        after = await viewer.get("/v1/reviews")
        listed = {key["id"]: key for key in (await app.api.get("/v1/keys")).json()}
    assert me["email"] == "vic@corp.example"
    assert me["auth_method"] == "api_key"
    assert me["scopes"] == ["reviews:read"]  # the key's reviews:write is beyond a viewer's roles
    assert write.status_code == 403
    assert "reviews:write" in write.json()["detail"]
    assert read.status_code == 200
    assert revoked.status_code == again.status_code == 200
    assert after.status_code == 401
    assert listed[mine["id"]]["revoked_at"] is not None
    assert all("key" not in key or not str(key.get("key", "")).startswith("smits_") for key in listed.values())


async def test_admins_manage_people_and_org_units_and_everyone_else_is_refused(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        manager = await app.person("sam@corp.example", Role.STRATEGY_MANAGER)
        units = [
            await app.api.post("/v1/org-units", json={"name": "group"}),
            await app.api.post("/v1/org-units", json={"name": "emea", "parent": "group"}),
        ]
        created = await app.api.post(
            "/v1/users",
            json={
                "email": "Rita@Corp.example",
                "name": "Rita",
                "roles": ["contributor"],
                "org_units": ["emea"],
                "manager": "sam@corp.example",
                "password": PASSWORD,
            },
        )
        duplicate = await app.api.post(
            "/v1/users", json={"email": "rita@corp.example", "name": "R", "roles": ["viewer"]}
        )
        weak = await app.api.post(
            "/v1/users", json={"email": "new@corp.example", "name": "N", "roles": ["viewer"], "password": "short"}
        )
        unknown_unit = await app.api.post(
            "/v1/users", json={"email": "x@corp.example", "name": "X", "roles": ["viewer"], "org_units": ["nowhere"]}
        )
        refused = await manager.post("/v1/users", json={"email": "y@corp.example", "name": "Y", "roles": ["admin"]})
        people = (await app.api.get("/v1/users")).json()
        tree = (await app.api.get("/v1/org-units")).json()
        async with _browser(app) as browser:
            await _sign_in(browser, "rita@corp.example")
            rita = (await browser.get("/v1/me")).json()
    assert [u.status_code for u in units] == [201, 201]
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "rita@corp.example"
    assert created.json()["manager"] == "sam@corp.example"
    assert duplicate.status_code == 409
    assert weak.status_code == 422
    assert weak.json()["field"] == "password"
    assert unknown_unit.status_code == 404
    assert refused.status_code == 403
    listed = {p["email"]: p for p in people}
    assert (listed["rita@corp.example"]["org_units"], listed["rita@corp.example"]["manager"]) == (
        ["emea"],
        "sam@corp.example",
    )
    assert {(u["name"], u["parent"]) for u in tree} == {("group", None), ("emea", "group")}
    assert rita["org_units"] == ["emea"]
    assert rita["roles"] == ["contributor"]


async def test_the_audit_api_pages_newest_first_and_is_for_admins_only(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        viewer = await app.person("vic@corp.example", Role.VIEWER)
        for name in ("a", "b", "c"):
            assert (await app.api.post("/v1/org-units", json={"name": name})).status_code == 201
        first = (await app.api.get("/v1/audit", params={"limit": 2})).json()
        rest = (await app.api.get("/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        by_target = (await app.api.get("/v1/audit", params={"target": "org_unit:b"})).json()
        bad_cursor = await app.api.get("/v1/audit", params={"cursor": "9" * 19})
        refused = await viewer.get("/v1/audit")
    assert [r["target"] for r in first["records"]] == ["org_unit:c", "org_unit:b"]
    assert [r["target"] for r in rest["records"]] == ["org_unit:a"]
    assert rest["next_cursor"] is None
    assert [r["action"] for r in by_target["records"]] == ["org_unit.create"]
    assert by_target["records"][0]["principal"] == "service:tests"
    assert by_target["records"][0]["method"] == "api_key"
    assert by_target["records"][0]["key_id"]
    assert bad_cursor.status_code == 400
    assert refused.status_code == 403


async def test_the_sign_in_page_is_a_plain_form_that_escapes_what_it_echoes(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app, _browser(app) as browser:
        page = await browser.get("/auth/login", params={"next": '/x"><script>alert(1)</script>'})
        failed = await browser.get("/auth/login", params={"failed": "true"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/auth/login">' in page.text
    assert "<script>" not in page.text
    assert "&quot;&gt;&lt;script&gt;" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert 'role="alert"' in failed.text


async def test_disabling_a_person_ends_their_sessions_revokes_their_keys_and_stops_sign_in(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "leaver@corp.example", Role.STRATEGY_MANAGER)
        keyed = await app.person("leaver@corp.example", Role.STRATEGY_MANAGER)
        admin = await app.person("ada@corp.example", Role.ADMIN)
        async with _browser(app) as browser:
            await _sign_in(browser, "leaver@corp.example")
            before = [(await browser.get("/v1/me")).status_code, (await keyed.get("/v1/me")).status_code]
            disabled = await app.api.post("/v1/users/leaver@corp.example/disable")
            again = await app.api.post("/v1/users/leaver@corp.example/disable")
            myself = await admin.post("/v1/users/ada@corp.example/disable")
            after = [(await browser.get("/v1/me")).status_code, (await keyed.get("/v1/me")).status_code]
            sign_in = await browser.post("/auth/login", json={"email": "leaver@corp.example", "password": PASSWORD})
        keys = (await app.api.get("/v1/keys")).json()
        async with app.runtime.uow.begin() as session:
            actions = (await session.scalars(select(AuditRow.action).where(AuditRow.action == "user.disable"))).all()
    assert before == [200, 200]
    assert disabled.status_code == again.status_code == 200
    assert disabled.json()["disabled"] is True
    assert myself.status_code == 422
    assert after == [401, 401]
    assert sign_in.status_code == 401
    assert all(key["revoked_at"] for key in keys if key["owner"] == "leaver@corp.example")
    assert actions == ["user.disable"]  # once: disabling again changes nothing


async def test_failing_in_someones_name_from_elsewhere_does_not_lock_them_out(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "ana@corp.example", Role.VIEWER)
        attacker = httpx.ASGITransport(app=app.transport.app, client=("203.0.113.7", 4000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=attacker, base_url="http://127.0.0.1:8000") as elsewhere:
            tries = [
                (await elsewhere.post("/auth/login", json={"email": "ana@corp.example", "password": "x"})).status_code
                for _ in range(15)
            ]
        async with _browser(app) as browser:
            own = await browser.post("/auth/login", json={"email": "ana@corp.example", "password": PASSWORD})
    assert 429 in tries  # the guesser is throttled ...
    assert own.status_code == 200  # ... and Ana, from her own client, still signs in


async def test_a_sign_in_form_posted_from_another_site_signs_nobody_in(settings: Settings) -> None:
    """Login CSRF: another site's form must not sign the victim's browser in as the attacker."""
    async with smits(settings, ["engine"]) as app:
        await _person(app, "mallory@corp.example", Role.STRATEGY_MANAGER)
        form = {"email": "mallory@corp.example", "password": PASSWORD}
        async with _browser(app) as browser:
            fetch_metadata = await browser.post("/auth/login", data=form, headers={"sec-fetch-site": "cross-site"})
            old_browser = await browser.post("/auth/login", data=form, headers={"origin": "https://evil.example"})
            sandboxed = await browser.post("/auth/login", data=form, headers={"origin": "null"})
            own_form = await browser.post(
                "/auth/login",
                data=form,
                headers={"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8000"},
            )
    for refused in (fetch_metadata, old_browser, sandboxed):
        assert refused.status_code == 403, refused.text
        assert "another site" in refused.json()["detail"]
        assert "set-cookie" not in refused.headers
    assert own_form.status_code == 303
    assert "smits_session" in _set_cookie(own_form)


async def test_an_admin_creates_a_key_answered_once_that_acts_within_its_owners_roles_and_is_audited(
    settings: Settings,
) -> None:
    async with smits(settings, ["engine"]) as app:
        await _person(app, "vic@corp.example", Role.VIEWER)
        viewer = await app.person("val@corp.example", Role.VIEWER)
        owned = await app.api.post(
            "/v1/keys",
            json={"name": "vic's laptop", "scopes": ["reviews:read", "reviews:write"], "owner": "Vic@Corp.example"},
        )
        service = await app.api.post("/v1/keys", json={"name": "feed", "scopes": ["triggers:write"]})
        unknown = await app.api.post(
            "/v1/keys", json={"name": "x", "scopes": ["reviews:read"], "owner": "no@corp.example"}
        )
        no_scope = await app.api.post("/v1/keys", json={"name": "x", "scopes": []})
        refused = await viewer.post("/v1/keys", json={"name": "mine", "scopes": ["admin"]})
        key = owned.json()["key"]
        async with httpx.AsyncClient(
            transport=app.transport, base_url="http://smits", headers={"authorization": f"Bearer {key}"}
        ) as as_vic:
            me = (await as_vic.get("/v1/me")).json()
            write = await as_vic.patch(f"/v1/reviews/{uuid.uuid4()}", json={"title": "x"})
        feed = (await app.api.get("/v1/keys")).json()
        records = (await app.api.get("/v1/audit", params={"target": f"key:{owned.json()['id']}"})).json()["records"]
    assert owned.status_code == service.status_code == 201, owned.text
    assert key.startswith("smits_")
    assert owned.json()["owner"] == "vic@corp.example"
    assert owned.json()["scopes"] == ["reviews:read", "reviews:write"]
    assert service.json()["owner"] is None
    assert (me["email"], me["auth_method"], me["scopes"]) == ("vic@corp.example", "api_key", ["reviews:read"])
    assert me["key_id"] == owned.json()["id"]
    assert write.status_code == 403  # the key's reviews:write is beyond a viewer's roles
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "owner"
    assert no_scope.status_code == 422
    assert refused.status_code == 403
    assert "'admin' scope" in refused.json()["detail"]
    listed = {k["id"]: k for k in feed}
    assert listed[owned.json()["id"]]["name"] == "vic's laptop"
    assert all("key" not in k for k in feed)  # the key itself is answered once, never listed
    assert [r["action"] for r in records] == ["key.create"]
    assert records[0]["detail"]["owner"] == "vic@corp.example"
    assert key not in str(records)
