"""The console's deliveries and admin pages, read and used as a signed-in person in a browser would (session
cookie, the form's CSRF token, no JavaScript), on real Postgres and Kafka with a real webhook receiver."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.core.identity.model import Role
from services.core.settings import Settings
from tests.support import console
from tests.support.console import PASSWORD, person
from tests.support.events import publish, review_event
from tests.support.harness import Harness, smits
from tests.support.receiver import Receiver
from tests.support.waiting import eventually


class Browser:
    """A signed-in person's browser: cookies only, and the CSRF token the pages embed sent with every form."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token

    async def get(self, path: str, **params: str) -> httpx.Response:
        return await self.client.get(path, params=params or None)  # (empty params would drop the path's query)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, follow: bool = True) -> httpx.Response:
        """Submit a form; a redirect (303 after an action) is followed like a browser does."""
        response = await self.client.post(path, data={"csrf_token": self.token, **(data or {})})
        if follow and response.status_code == 303:
            return await self.client.get(response.headers["location"])
        return response


@asynccontextmanager
async def signed_in(app: Harness, email: str, *roles: Role, home: str = "/admin") -> AsyncIterator[Browser]:
    """Signed in through the sign-in form; the CSRF token is read from the page `home`, as its forms carry it."""
    async with console.signed_in(app, email, *roles, home=home) as client:
        page = await client.get(home)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        yield Browser(client, found.group(1) if found else "")


def text(response: httpx.Response) -> str:
    """The page's text as a person reads it (entities decoded)."""
    return html.unescape(response.text)


def rows(response: httpx.Response) -> list[str]:
    """The body rows of the page's tables, as text without tags."""
    return [
        re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", row))).strip()
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", response.text, flags=re.S)
        if "<td" in row
    ]


async def _deliveries(app: Harness, **params: str) -> list[dict[str, Any]]:
    response = await app.api.get("/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def test_subscriptions_show_health_deliveries_attempts_and_resend_delivers_again(settings: Settings) -> None:
    with Receiver(default=500) as receiver:
        async with (
            smits(settings, ["notifier", "console"]) as app,
            signed_in(app, "ada@corp.example", Role.ADMIN, home="/subscriptions") as ada,
        ):
            empty = await ada.get("/subscriptions")
            refused = await ada.post(
                "/subscriptions",
                {"url": "not a url", "description": "ops bridge", "severities": ["high"], "event_types": "review.*"},
            )
            created = await ada.post(
                "/subscriptions",
                {"url": receiver.url, "description": "ops bridge", "event_types": "review.*", "enabled": "on"},
            )
            listed = await ada.get("/subscriptions")
            sub = (await app.api.get("/v1/subscriptions")).json()[0]
            rotated = await ada.post(f"/subscriptions/{sub['id']}/secret")
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            failed = await eventually(lambda: _deliveries(app, status="failed"), lambda d: len(d) == 1, what="failed")
            failing = await ada.get("/subscriptions")
            deliveries = await ada.get(f"/subscriptions/{sub['id']}")
            only_delivered = await ada.get(f"/subscriptions/{sub['id']}", status="delivered")
            delivery_path = f"/subscriptions/{sub['id']}/deliveries/{failed[0]['id']}"
            attempts = await ada.get(delivery_path)
            receiver.default = 204
            resent = await ada.post(f"{delivery_path}/resend")
            await eventually(lambda: _deliveries(app, status="delivered"), lambda d: len(d) == 1, what="resent")
            after = await ada.get(delivery_path)
            again = await ada.post(f"{delivery_path}/resend")
            healthy = await ada.get("/subscriptions")
            disabled = await ada.post(f"/subscriptions/{sub['id']}/enabled", {"enabled": "false"})
            forged = await ada.client.post(f"/subscriptions/{sub['id']}/enabled", data={"enabled": "true"})
            state = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
    tries = len(settings.delivery_retry_schedule)
    assert empty.status_code == 200
    assert "No subscription yet" in text(empty)
    assert refused.status_code == 422
    assert 'id="url-error"' in refused.text  # the message beside the field it is about
    assert 'aria-describedby="url-error"' in refused.text
    assert 'value="not a url"' in refused.text
    assert 'value="ops bridge"' in refused.text
    assert re.search(r'value="high" checked', refused.text)
    assert created.status_code == 201
    secret = re.findall(r"whsec_[A-Za-z0-9+/=]+", created.text)
    assert len(secret) == 1  # shown once, on this page only
    assert "Copy the signing secret now" in text(created)
    assert secret[0] not in listed.text
    new_secret = re.findall(r"whsec_[A-Za-z0-9+/=]+", rotated.text)
    assert len(new_secret) == 1
    assert new_secret != secret
    assert "The previous secret keeps signing alongside it until" in text(rotated)
    assert [r for r in rows(listed) if receiver.url in r] == [
        f"{receiver.url} ops bridge Events: review.* enabled never not failing"
    ]
    assert "failing since" in rows(failing)[0]
    assert "never" in rows(failing)[0]
    assert len(rows(deliveries)) == 1
    assert rows(deliveries)[0].startswith(failed[0]["created_at"][:10])
    assert "review.opened" in rows(deliveries)[0]
    assert "failed" in rows(deliveries)[0]
    assert f" {tries} 500 " in f" {rows(deliveries)[0]} "
    assert "No delivered delivery for this subscription." in text(only_delivered)
    assert attempts.status_code == 200
    assert [r.split()[0] for r in rows(attempts)] == [str(n) for n in range(1, tries + 1)]
    assert all("500 (failed)" in r for r in rows(attempts))
    assert ">Resend</button>" in attempts.text
    assert resent.status_code == 200
    assert "Resent: the delivery is pending again" in text(resent)  # the flash after the action
    assert len(rows(after)) == tries + 1  # the resend's attempt is logged after the failed ones
    assert "204 (delivered)" in rows(after)[-1]
    assert ">Resend</button>" not in after.text
    assert again.status_code == 409
    assert "delivery is delivered; only failed ones are resent" in text(again)
    assert "not failing" in rows(healthy)[0]
    assert "never" not in rows(healthy)[0]
    assert "Disabled: no webhook is sent to it" in text(disabled)
    assert forged.status_code == 403  # a form without the session's CSRF token changes nothing
    assert "This form has expired" in text(forged)
    assert state["enabled"] is False


async def test_admins_manage_people_units_keys_and_search_the_audit_log(settings: Settings) -> None:
    async with smits(settings, ["console"]) as app:
        async with signed_in(app, "ada@corp.example", Role.ADMIN) as ada:
            unit = await ada.post("/admin/org-units", {"name": "emea", "lead": "ada@corp.example"})
            child = await ada.post("/admin/org-units", {"name": "emea-payments", "parent": "emea"})
            invalid = await ada.post(
                "/admin/users",
                {"email": "rita at corp", "name": "Rita", "roles": ["contributor"], "org_units": ["emea"]},
            )
            added = await ada.post(
                "/admin/users",
                {
                    "email": "rita@corp.example",
                    "name": "Rita",
                    "roles": ["contributor", "approver"],
                    "org_units": ["emea"],
                    "password": PASSWORD,
                },
            )
            cleared = await ada.post("/admin/users/rita%40corp.example/clearance", {"cleared_restricted": "true"})
            confirm_disable = await ada.get("/admin/users/rita%40corp.example/disable")
            disabled = await ada.post("/admin/users/rita%40corp.example/disable")
            myself = await ada.post("/admin/users/ada%40corp.example/disable")
            await person(app, "vic@corp.example", Role.VIEWER)
            unknown_owner = await ada.post(
                "/admin/keys", {"name": "vic's laptop", "scopes": ["reviews:read"], "owner": "nobody@corp.example"}
            )
            made = await ada.post(
                "/admin/keys", {"name": "vic's laptop", "scopes": ["reviews:read"], "owner": "vic@corp.example"}
            )
            keys_after = await ada.get("/admin/keys")
            key = re.findall(r'id="new-key"[^>]*value="([^"]+)"', made.text)
            async with httpx.AsyncClient(transport=app.transport, base_url="http://smits") as bearer:
                me = await bearer.get("/v1/me", headers={"authorization": f"Bearer {key[0]}"})
                key_id = me.json()["key_id"]
                confirm_revoke = await ada.get(f"/admin/keys/{key_id}/revoke")
                revoked = await ada.post(f"/admin/keys/{key_id}/revoke")
                refused_key = await bearer.get("/v1/me", headers={"authorization": f"Bearer {key[0]}"})
            by_target = await ada.get("/admin/audit", target="org_unit:emea")
            by_ada = await ada.get("/admin/audit", principal="ada@corp.example", limit="2")
            older = re.search(r'href="/admin/audit\?([^"]+)" rel="next"', by_ada.text)
            assert older is not None
            page_two = await ada.get(f"/admin/audit?{html.unescape(older.group(1))}")
            bad_since = await ada.get("/admin/audit", since="last tuesday")
            bad_cursor = await ada.get("/admin/audit", cursor="not-a-cursor")
            stale_cursor = await ada.get("/admin/audit", cursor="9" * 19)
            nothing = await ada.get("/admin/audit", principal="nobody@corp.example")
            people = await ada.get("/admin")
            units = await ada.get("/admin/org-units")
        async with signed_in(app, "vic@corp.example", Role.VIEWER) as vic:
            vic_admin = await vic.get("/admin")
            vic_keys = await vic.get("/admin/keys")
            vic_home = await vic.get("/")
    assert "Created the org unit emea." in text(unit)
    assert "Created the org unit emea-payments under emea." in text(child)
    assert set(rows(units)) == {"emea — ada@corp.example", "emea-payments emea —"}
    assert invalid.status_code == 422
    assert 'id="email-error"' in invalid.text
    assert "The person was not added: correct the field marked below." in text(invalid)
    assert "Give an e-mail address, like ana@corp.example." in text(invalid)  # in words, not the pattern
    assert 'aria-invalid="true"' in invalid.text
    assert 'value="rita at corp"' in invalid.text
    assert 'value="Rita"' in invalid.text
    assert re.search(r'value="contributor" checked', invalid.text)
    assert re.search(r'value="emea" checked', invalid.text)
    assert "Created rita@corp.example (approver, contributor)" in text(added)
    assert "is cleared for all restricted" in text(cleared)
    assert "Disable rita@corp.example?" in text(confirm_disable)  # asked first: it cannot be undone
    assert 'action="/admin/users/rita%40corp.example/disable"' in confirm_disable.text
    assert "Disabled rita@corp.example: their sessions ended" in text(disabled)
    assert myself.status_code == 422
    assert "an admin cannot disable themself" in text(myself)
    rita = next(r for r in rows(people) if "rita@corp.example" in r)
    assert rita.startswith("Rita rita@corp.example approver, contributor emea")
    assert "cleared for all disabled" in rita
    assert unknown_owner.status_code == 422
    assert 'id="owner-error"' in unknown_owner.text  # the API's words beside the field
    assert "no person with e-mail 'nobody@corp.example'" in text(unknown_owner)
    assert 'value="vic\'s laptop"' in text(unknown_owner)
    assert 'value="nobody@corp.example"' in unknown_owner.text
    assert made.status_code == 201
    assert len(key) == 1
    assert key[0].startswith("smits_")
    assert made.text.count(key[0]) == 1  # shown exactly once ...
    assert "Copy the new key now" in text(made)
    assert "only time smits shows" in text(made)
    assert key[0] not in keys_after.text  # ... and never again
    assert any(r.startswith("vic's laptop reviews:read vic@corp.example") and "active" in r for r in rows(keys_after))
    assert me.status_code == 200
    assert me.json()["email"] == "vic@corp.example"
    assert "Revoke the key “vic's laptop”?" in text(confirm_revoke)
    assert "vic@corp.example, reviews:read" in text(confirm_revoke)
    assert "Revoked the key “vic's laptop”" in text(revoked)
    assert any(r.startswith("vic's laptop") and "revoked" in r for r in rows(revoked))
    assert refused_key.status_code == 401
    assert len(rows(by_target)) == 1
    assert "ada@corp.example (session) org_unit.create org_unit:emea ok" in rows(by_target)[0]
    assert [r.split()[5] for r in rows(by_ada)] == ["key.revoke", "key.create"]
    assert "user.disable" in rows(page_two)[0]  # the refused self-disabling changed nothing and is not there
    assert "Newest records" in text(page_two)
    assert bad_since.status_code == 422
    assert 'id="since-error"' in bad_since.text
    assert 'value="last tuesday"' in bad_since.text
    assert bad_cursor.status_code == 422
    assert "cursor: that page link is not one smits made" in text(bad_cursor)  # no box for it: said above
    assert stale_cursor.status_code == 400
    assert "cursor is not one this API returned" in text(stale_cursor)
    assert "No audit record matches this search." in text(nothing)
    assert vic_admin.status_code == vic_keys.status_code == 403
    assert "needs the 'admin' scope, which the caller's roles do not grant" in text(vic_admin)
    assert 'href="/admin"' not in vic_home.text  # no Admin entry in a viewer's navigation
