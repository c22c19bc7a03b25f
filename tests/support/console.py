"""Signing in to the console in-process (cookies only, as a browser without script would), for page tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx

from services.core.identity import passwords, store
from services.core.identity.model import Role
from tests.support.harness import Harness

PASSWORD = "correct horse battery staple"
SITE = "http://127.0.0.1:8000"


async def person(app: Harness, email: str, *roles: Role) -> None:
    """A person with the local password `PASSWORD` (unless they exist)."""
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
async def signed_in(app: Harness, email: str, *roles: Role, home: str = "/") -> AsyncIterator[httpx.AsyncClient]:
    """A browser (cookies only) signed in through the sign-in form as `email` (created with `roles` if new)."""
    await person(app, email, *roles)
    async with httpx.AsyncClient(transport=app.transport, base_url=SITE) as browser:
        answer = await browser.post("/auth/login", data={"email": email, "password": PASSWORD, "next": home})
        assert answer.status_code == 303, answer.text
        yield browser
