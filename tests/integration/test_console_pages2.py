"""The console's deliveries and admin pages, read and used as a signed-in person in a browser would (session
cookie, the form's CSRF token, no JavaScript), on real Postgres and Kafka with a real webhook receiver."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from services.core.identity import passwords, store
from services.core.identity.model import Role
from services.core.settings import Settings
from tests.support.events import publish, review_event
from tests.support.harness import Harness, smits
from tests.support.receiver import Receiver
from tests.support.waiting import eventually

PASSWORD = "correct horse battery staple"


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


async def person(app: Harness, email: str, *roles: Role) -> None:
    """A person with a local password (unless they exist)."""
    async with app.runtime.uow.begin() as session:
        if await store.principal_by_email(session, email) is None:
            await store.create_person(
                session,
                email=email,
                name=email.split("@")[0].capitalize(),
                roles=roles,
                password_hash=passwords.hash_password(PASSWORD),
                now=datetime.now(UTC),
            )


@asynccontextmanager
async def signed_in(app: Harness, email: str, *roles: Role, home: str = "/admin") -> AsyncIterator[Browser]:
    """Signed in through the sign-in form; the CSRF token is read from the page `home`, as its forms carry it."""
    await person(app, email, *roles)
    async with httpx.AsyncClient(transport=app.transport, base_url="http://127.0.0.1:8000") as client:
        response = await client.post("/auth/login", data={"email": email, "password": PASSWORD, "next": home})
        assert response.status_code == 303, response.text
        page = await client.get(response.headers["location"])
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
