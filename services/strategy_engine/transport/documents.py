"""Documents: new versions from a review, status changes, acknowledgements (scope reviews:write)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.auth import ReviewsRead, ReviewsWrite
from services.core.db import get_row
from services.core.errors import NotFound
from services.core.http import ActorField, PositiveInt32, ProblemError, request_id
from services.core.identity import audit
from services.core.identity.model import EMAIL_PATTERN
from services.core.runtime import Runtime
from services.strategy_engine import persistence
from services.strategy_engine.documents import AckState, Kind, Recipient, Status, ack_state
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
    reason: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        default=None, description="why an admin records it on the recipient's behalf; required with on_behalf_of"
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
    pending: int = Field(description="not acknowledged, not yet due")
    overdue: int = Field(description="not acknowledged, past the due date")
    recipients: list[CampaignRecipientOut]


class DocumentOut(BaseModel):
    id: uuid.UUID
    kind: str
    org_unit: str | None
    title: str
    current_version: int | None
    versions: list[VersionOut]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])

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
                current_version=document.current_version,
                versions=[_version_view(document, v, recipients[v.id]) for v in versions],
            )

    @router.get("/documents/{document_id}/versions/{number}/campaign", response_model=CampaignOut)
    async def get_campaign(
        document_id: uuid.UUID, number: Annotated[int, Path(ge=1, le=2_147_483_647)], caller: ReviewsRead
    ) -> CampaignOut:
        """Acknowledgement progress of one version: counts and each recipient's state (`acknowledged`,
        `pending`, `overdue`); a version not yet published has no recipients. Need-to-know like the document:
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
                state=ack_state(acknowledged_at=row.acknowledged_at, due_at=row.due_at, now=now),
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
        copy. An admin may record it for a recipient with `on_behalf_of` and a `reason` (shown as such)."""
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            document, versions = await _visible(session, document_id, caller.grants)
            number = body.version if body.version is not None else document.current_version
            if number is not None and number not in {v.version for v in versions}:  # as the flow says if missing
                who = body.on_behalf_of or caller.label
                raise NotFound(f"{who!r} is not on version {number}'s distribution list")
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
                action="acknowledgement.record",
                target=f"document:{document_id}",
                now=now,
                request_id=request_id(request),
                detail={
                    "version": body.version,
                    "recipient": row.recipient,
                    "on_behalf": body.on_behalf_of is not None,
                    "reason": body.reason,
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


def _recipient(row: AcknowledgementRow) -> RecipientOut:
    return RecipientOut(
        recipient=row.recipient,
        org_unit=row.org_unit,
        required=row.required,
        due_at=row.due_at,
        acknowledged_at=row.acknowledged_at,
        recorded_by=row.recorded_by,
        reason=row.reason,
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
