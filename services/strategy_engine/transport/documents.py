"""Documents: the register, new versions from a review, status changes, acknowledgements and the other answers
of a recipient (decline, exception), campaign progress."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.auth import ReviewsRead, ReviewsWrite
from services.core.db import get_row
from services.core.errors import Invalid, NotFound
from services.core.http import ActorField, PositiveInt32, ProblemError, request_id
from services.core.identity import audit
from services.core.identity.model import EMAIL_PATTERN
from services.core.runtime import Runtime
from services.strategy_engine import persistence
from services.strategy_engine.board import MAX_QUERY_TEXT
from services.strategy_engine.documents import (
    REASON_MAX,
    AckState,
    Kind,
    Recipient,
    RecipientAnswer,
    Status,
    ack_state,
    reason_of,
)
from services.strategy_engine.flows import documents
from services.strategy_engine.flows.events import require_visible
from services.strategy_engine.persistence import AcknowledgementRow, DocumentRow, DocumentVersionRow

Name = Annotated[str, Field(min_length=1, max_length=200)]


class DocumentIn(BaseModel):
    kind: Kind
    org_unit: Name | None = Field(default=None, description="required for tactical and operational plans")
    title: Annotated[str, Field(min_length=1, max_length=500)]
    summary: Annotated[str, Field(max_length=20_000)] = ""
    distribution: list[Recipient] = []
    ack_due_days: Annotated[float, Field(gt=0, le=365)] = 10
    publish: bool = Field(default=False, description="walk draft → in review → approved → published at once")
    certified_by: Name | None = Field(default=None, description="who certifies the update; needed to publish")


class StatusIn(BaseModel):
    to: Status
    certified_by: Name | None = None


class AcknowledgementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: PositiveInt32 | None = Field(default=None, description="default: the current version")
    on_behalf_of: Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)] | None = Field(
        default=None, description="admins only: the recipient (e-mail) whose acknowledgement is recorded"
    )
    decision: RecipientAnswer = Field(
        default=RecipientAnswer.ACKNOWLEDGE,
        description="acknowledge (the default), decline, or exception (ask to be excused); the last two as the "
        "signed-in recipient only, with a reason",
    )
    reason: Annotated[str, Field(min_length=1, max_length=REASON_MAX)] | None = Field(
        default=None,
        description="why an admin records it on the recipient's behalf (required with on_behalf_of); why the "
        "recipient declines or asks for an exception (required with those)",
    )
    recipient: ActorField = Field(default=None, exclude=True)


class RecipientOut(BaseModel):
    recipient: str
    org_unit: str | None
    required: bool
    due_at: datetime
    acknowledged_at: datetime | None
    recorded_by: str | None = Field(description="who recorded the acknowledgement (an admin on the recipient's behalf)")
    reason: str | None = Field(description="why it was recorded on the recipient's behalf")
    method: str | None = Field(
        default=None, description="how the acknowledgement was proven: session, api_key, bearer_jwt, signed_link"
    )
    decision: str | None = Field(
        default=None,
        description="declined or exception_requested, if the recipient answered so (and has not acknowledged)",
    )
    decided_at: datetime | None = None
    decision_reason: str | None = None
    last_acknowledged_version: int | None = Field(
        default=None, description="the version of this document the recipient had acknowledged when it was published"
    )


class VersionOut(BaseModel):
    document_id: uuid.UUID
    kind: str
    org_unit: str | None
    title: str
    version: int
    status: str
    review_id: uuid.UUID
    published_at: datetime | None
    certified_by: str | None
    recipients: list[RecipientOut]


class CampaignRecipientOut(RecipientOut):
    state: AckState


class CampaignOut(BaseModel):
    document_id: uuid.UUID
    version: int
    status: str
    published_at: datetime | None
    total: int
    acknowledged: int
    declined: int
    exception_requested: int
    pending: int = Field(description="not acknowledged nor answered, not yet due")
    overdue: int = Field(description="not acknowledged nor answered, past the due date")
    recipients: list[CampaignRecipientOut]


class RegisterEntryOut(BaseModel):
    id: uuid.UUID
    kind: str
    org_unit: str | None
    title: str
    current_version: int | None = Field(description="the published version")
    latest_version: int = Field(description="the newest version the caller may see")
    status: str = Field(description="the status of the newest version the caller may see")
    overdue: int = Field(description="acknowledgements of the current version past due, neither given nor answered")


class RegisterPage(BaseModel):
    items: list[RegisterEntryOut]
    next_cursor: str | None


class DocumentOut(BaseModel):
    id: uuid.UUID
    kind: str
    org_unit: str | None
    title: str
    current_version: int | None
    versions: list[VersionOut]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])

    @router.get("/documents", response_model=RegisterPage)
    async def list_documents(
        caller: ReviewsRead,
        kind: Kind | None = None,
        org_unit: Annotated[str | None, Query(max_length=200)] = None,
        status: Status | None = None,
        has_overdue: bool | None = None,
        q: Annotated[str | None, Query(min_length=1, max_length=MAX_QUERY_TEXT)] = None,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> RegisterPage:
        """The register: documents with at least one version the caller may see (need-to-know), by title
        (ignoring case). Filters: `kind`; `org_unit` (`""`: organisation-wide ones); `status` of the newest
        version the caller may see; `has_overdue` acknowledgements of the current version; `q` in the title.
        Pass `next_cursor` back as `cursor` for the next page."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            rows = await persistence.register(
                session,
                kind=kind.value if kind else None,
                org_unit=org_unit,
                status=status.value if status else None,
                has_overdue=has_overdue,
                text=q,
                after=_register_after(cursor) if cursor else None,
                limit=limit + 1,
                now=now,
                grants=caller.grants,
            )
        page = rows[:limit]
        items = [
            RegisterEntryOut(
                id=document.id,
                kind=document.kind,
                org_unit=document.org_unit or None,
                title=document.title,
                current_version=document.current_version if seen else None,  # a hidden one is not named
                latest_version=version.version,
                status=version.status,
                overdue=overdue,
            )
            for document, version, overdue, seen, _ in page
        ]
        last = page[-1] if len(rows) > limit else None
        next_cursor = base64.urlsafe_b64encode(orjson.dumps([last[4], str(last[0].id)])).decode() if last else None
        return RegisterPage(items=items, next_cursor=next_cursor)

    @router.post("/reviews/{review_id}/documents", status_code=201, response_model=VersionOut)
    async def add_document(
        request: Request, review_id: uuid.UUID, body: DocumentIn, caller: ReviewsWrite
    ) -> VersionOut:
        """A new version of the (kind, org unit) document (a strategy manager, the review's owner or a
        contributor of its org unit); recipients are people, by e-mail; publishing supersedes the previous
        version."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            await require_visible(session, review_id, caller.grants)
            version = await documents.add_version(
                session,
                review_id=review_id,
                kind=body.kind,
                org_unit=body.org_unit,
                title=body.title,
                summary=body.summary,
                distribution=body.distribution,
                ack_due_days=body.ack_due_days,
                caller=caller,
                now=now,
            )
            if body.publish:
                for step in (Status.IN_REVIEW, Status.APPROVED, Status.PUBLISHED):
                    await documents.move_version(
                        session, version=version, target=step, certified_by=body.certified_by, now=now
                    )
            await session.flush()
            out = await _version_out(session, version)
            await audit.record_by(
                session,
                caller,
                action="document.create",
                target=f"document:{version.document_id}",
                now=now,
                request_id=request_id(request),
                after=out.model_dump(mode="json"),
                detail={"review": str(review_id), "version": version.version, "status": version.status},
            )
            return out

    @router.post("/documents/{document_id}/versions/{number}/status", response_model=VersionOut)
    async def change_status(
        request: Request,
        document_id: uuid.UUID,
        number: Annotated[int, Path(ge=1, le=2_147_483_647)],
        body: StatusIn,
        caller: ReviewsWrite,
    ) -> VersionOut:
        """A strategy manager, the owner of the review that produced the version, or a contributor of its unit."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            version = await persistence.document_version(session, document_id, number, caller.grants)
            if version is None:
                raise ProblemError(404, "Not Found", f"no version {number} of document {document_id}")
            before = version.status
            await documents.change_status(
                session, version=version, target=body.to, certified_by=body.certified_by, caller=caller, now=now
            )
            await session.flush()
            await audit.record_by(
                session,
                caller,
                action="document.status",
                target=f"document:{document_id}",
                now=now,
                request_id=request_id(request),
                before={"version": number, "status": before},
                after={"version": number, "status": version.status},
                detail={"version": number, "from": before, "to": version.status},
            )
            return await _version_out(session, version)

    @router.get("/documents/{document_id}", response_model=DocumentOut)
    async def get_document(document_id: uuid.UUID, caller: ReviewsRead) -> DocumentOut:
        """Only the versions produced by reviews the caller is cleared for; none at all is 404."""
        async with runtime.uow.begin() as session:
            document, versions = await _visible(session, document_id, caller.grants)
            recipients = await persistence.acknowledgements_of(session, [v.id for v in versions])
            return DocumentOut(
                id=document.id,
                kind=document.kind,
                org_unit=document.org_unit or None,
                title=document.title,
                # the current version only when the caller may see it (its number alone says a hidden one exists)
                current_version=document.current_version
                if any(v.version == document.current_version for v in versions)
                else None,
                versions=[_version_view(document, v, recipients[v.id]) for v in versions],
            )

    @router.get("/documents/{document_id}/versions/{number}/campaign", response_model=CampaignOut)
    async def get_campaign(
        document_id: uuid.UUID, number: Annotated[int, Path(ge=1, le=2_147_483_647)], caller: ReviewsRead
    ) -> CampaignOut:
        """Acknowledgement progress of one version: counts and each recipient's state (`acknowledged`,
        `declined`, `exception_requested`, `pending`, `overdue`); a version not yet published has no recipients.
        Need-to-know like the document:
        a version of a review the caller is not cleared for is 404."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            version = await persistence.document_version(session, document_id, number, caller.grants)
            if version is None:
                raise NotFound(f"no version {number} of document {document_id}")
            acks = (await persistence.acknowledgements_of(session, [version.id]))[version.id]
        recipients = [
            CampaignRecipientOut(
                **_recipient(row).model_dump(),
                state=ack_state(acknowledged_at=row.acknowledged_at, due_at=row.due_at, now=now, decision=row.decision),
            )
            for row in acks
        ]
        counts = Counter(r.state for r in recipients)
        return CampaignOut(
            document_id=document_id,
            version=version.version,
            status=version.status,
            published_at=version.published_at,
            total=len(recipients),
            acknowledged=counts[AckState.ACKNOWLEDGED],
            declined=counts[AckState.DECLINED],
            exception_requested=counts[AckState.EXCEPTION_REQUESTED],
            pending=counts[AckState.PENDING],
            overdue=counts[AckState.OVERDUE],
            recipients=recipients,
        )

    @router.post("/documents/{document_id}/acknowledgements", response_model=RecipientOut)
    async def acknowledge(
        request: Request, document_id: uuid.UUID, body: AcknowledgementIn, caller: ReviewsRead
    ) -> RecipientOut:
        """The caller, a recipient, now holds this version (the current one by default); repeating it changes
        nothing. Reading is enough: a recipient who may only read (a viewer) still acknowledges their
        copy. An admin may record it for a recipient with `on_behalf_of` and a `reason` (shown as such).
        With `decision` `decline` or `exception` and a `reason`, the signed-in recipient instead declines the
        version or asks to be excused from it (their latest answer counts until they acknowledge; an
        acknowledged version cannot be declined)."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            document, versions = await _visible(session, document_id, caller.grants)
            number = body.version if body.version is not None else document.current_version
            if number is not None and number not in {v.version for v in versions}:  # as the flow says if missing
                who = body.on_behalf_of or caller.label
                raise NotFound(f"{who!r} is not on version {number}'s distribution list")
            if body.decision is not RecipientAnswer.ACKNOWLEDGE:
                if body.on_behalf_of is not None:
                    raise Invalid(f"only the recipient may {body.decision.value}", field="on_behalf_of")
                reason = reason_of(body.decision, body.reason)
                assert reason is not None
                row = await documents.decide(
                    session,
                    document_id=document_id,
                    version=body.version,
                    caller=caller,
                    decision=body.decision,
                    reason=reason,
                    now=now,
                )
            else:
                row = await documents.acknowledge(
                    session,
                    document_id=document_id,
                    version=body.version,
                    caller=caller,
                    on_behalf_of=body.on_behalf_of,
                    reason=body.reason,
                    now=now,
                )
            await audit.record_by(
                session,
                caller,
                action=ACTIONS[body.decision],
                target=f"document:{document_id}",
                now=now,
                request_id=request_id(request),
                detail={
                    "version": body.version,
                    "recipient": row.recipient,
                    "on_behalf": body.on_behalf_of is not None,
                    "reason": body.reason,
                    "method": caller.method.value,
                },
            )
            return _recipient(row)

    return router


async def _visible(
    session: AsyncSession, document_id: uuid.UUID, grants: Collection[str]
) -> tuple[DocumentRow, list[DocumentVersionRow]]:
    """The document and its versions the caller may see (need-to-know); one with none is 404 as if missing."""
    document = await session.get(DocumentRow, document_id)
    versions = await persistence.document_versions(session, document_id, grants) if document else []
    if document is None or not versions:
        raise NotFound(f"no document {document_id}")
    return document, versions


ACTIONS = {
    RecipientAnswer.ACKNOWLEDGE: "acknowledgement.record",
    RecipientAnswer.DECLINE: "acknowledgement.decline",
    RecipientAnswer.EXCEPTION: "acknowledgement.exception",
}


def _register_after(cursor: str) -> tuple[str, uuid.UUID]:
    """Where the previous page of the register ended; a cursor this API did not return is a 400."""
    try:
        key, row = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(key, str) or "\x00" in key:
            raise ValueError("not a title")
        return key, uuid.UUID(str(row))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ProblemError(400, "Bad Request", "cursor is not one this API returned", field="cursor") from exc


def _recipient(row: AcknowledgementRow) -> RecipientOut:
    return RecipientOut(
        recipient=row.recipient,
        org_unit=row.org_unit,
        required=row.required,
        due_at=row.due_at,
        acknowledged_at=row.acknowledged_at,
        recorded_by=row.recorded_by,
        reason=row.reason,
        method=row.method,
        decision=row.decision,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        last_acknowledged_version=row.last_acknowledged_version,
    )


async def _version_out(session: AsyncSession, version: DocumentVersionRow) -> VersionOut:
    document = await get_row(session, DocumentRow, version.document_id, what="document")
    recipients = await persistence.acknowledgements_of(session, [version.id])
    return _version_view(document, version, recipients[version.id])


def _version_view(document: DocumentRow, version: DocumentVersionRow, acks: list[AcknowledgementRow]) -> VersionOut:
    return VersionOut(
        document_id=document.id,
        kind=document.kind,
        org_unit=document.org_unit or None,
        title=document.title,
        version=version.version,
        status=version.status,
        review_id=version.review_id,
        published_at=version.published_at,
        certified_by=version.certified_by,
        recipients=[_recipient(a) for a in acks],
    )
