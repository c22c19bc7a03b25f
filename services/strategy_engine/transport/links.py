"""`/v1/acknowledge-link?token=…`: the signed, expiring, single-use link of a campaign e-mail. GET only shows what
the link would record (mail scanners follow links: a GET never acknowledges), as a small page with a button for a
browser or as JSON; POST records the acknowledgement as the link's recipient, audited with method `signed_link`.
No session is needed: the token is the proof. Without `SMITS_LINK_SIGNING_KEY` no link is accepted (404)."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from services.core.errors import DomainError, NotFound
from services.core.http import request_id
from services.core.identity import audit
from services.core.links import MAX_TOKEN, AckLink, verify
from services.core.runtime import Runtime
from services.strategy_engine import persistence
from services.strategy_engine.flows import documents

Token = Annotated[str, Query(min_length=1, max_length=MAX_TOKEN)]
_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


class LinkOut(BaseModel):
    document_id: uuid.UUID
    version: int
    recipient: str
    expires_at: datetime
    acknowledged_at: datetime | None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="font-family: sans-serif; max-width: 40em;"><h1>{html.escape(title)}</h1>{body}</body></html>'
    )
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


def _refused(problem: DomainError) -> HTMLResponse:
    return _page(problem.title, f"<p>{html.escape(problem.detail)}</p>", status=problem.status)


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])

    def checked(token: str, now: datetime) -> AckLink:
        key = runtime.settings.link_signing_key
        if key is None:
            raise NotFound("signed links are off here: open the document and sign in to acknowledge it")
        return verify(token, secret=key.get_secret_value(), now=now)

    @router.get("/acknowledge-link", response_model=LinkOut)
    async def show_link(request: Request, token: Token) -> Response:
        """What the link records (document, version, recipient, expiry) and whether it is recorded already;
        nothing is written. A browser gets a page with the button that records it."""
        now = datetime.now(UTC)
        try:
            link = checked(token, now)
            async with runtime.uow.begin() as session:
                caller = await documents.link_caller(session, link.recipient)
                version = await persistence.document_version(session, link.document_id, link.version, caller.grants)
                row = await persistence.acknowledgement_of(session, link.document_id, link.version, caller.label)
                if version is None or row is None:
                    raise NotFound(f"{caller.label} is not on version {link.version}'s distribution list")
        except DomainError as problem:
            if _wants_html(request):
                return _refused(problem)
            raise
        out = LinkOut(
            document_id=link.document_id,
            version=link.version,
            recipient=row.recipient,
            expires_at=link.expires_at,
            acknowledged_at=row.acknowledged_at,
        )
        if not _wants_html(request):
            return Response(out.model_dump_json(), media_type="application/json", headers=_HEADERS)
        if row.acknowledged_at is not None:
            return _page("Already acknowledged", f"<p>{html.escape(row.recipient)} acknowledged this version.</p>")
        action = f"/v1/acknowledge-link?token={quote(token, safe='')}"
        return _page(
            f"Acknowledge version {link.version}",
            f"<p>As <strong>{html.escape(row.recipient)}</strong>, confirm that you hold version {link.version} "
            f'of this document.</p><form method="post" action="{html.escape(action)}">'
            '<button type="submit">Acknowledge</button></form>',
        )

    @router.post("/acknowledge-link", response_model=LinkOut)
    async def use_link(request: Request, token: Token) -> Response:
        """Record the acknowledgement the link allows, as its recipient, once; a link used already (or whose
        acknowledgement was recorded after sign-in) is a 409, an expired, altered or foreign one a 403, one whose
        version was replaced by a later one a 403 too (`link` says which)."""
        now = datetime.now(UTC)
        try:
            link = checked(token, now)
            async with runtime.uow.begin() as session:
                caller = await documents.link_caller(session, link.recipient)
                row = await documents.acknowledge_by_link(session, link=link, caller=caller, now=now)
                await audit.record_by(
                    session,
                    caller,
                    action="acknowledgement.record",
                    target=f"document:{link.document_id}",
                    now=now,
                    request_id=request_id(request),
                    detail={
                        "version": link.version,
                        "recipient": row.recipient,
                        "on_behalf": False,
                        "method": caller.method.value,
                        "link": link.token_id,
                    },
                )
                out = LinkOut(
                    document_id=link.document_id,
                    version=link.version,
                    recipient=row.recipient,
                    expires_at=link.expires_at,
                    acknowledged_at=row.acknowledged_at,
                )
        except DomainError as problem:
            if _wants_html(request):
                return _refused(problem)
            raise
        if _wants_html(request):
            return _page("Acknowledged", f"<p>Thank you: version {link.version} is recorded as held by you.</p>")
        return Response(out.model_dump_json(), media_type="application/json", headers=_HEADERS)

    return router
