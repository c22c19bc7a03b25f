"""`GET/PUT /v1/me/preferences`: the signed-in person's own notice preferences (scope `reviews:read`, the
self-service scope of `/v1/me/pending`). There is no way to name another person: each reads and writes their own.
A write replaces the whole document (a field left out takes its default) and is audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from services.core.auth import Caller, ReviewsRead
from services.core.errors import Forbidden
from services.core.http import request_id
from services.core.identity import audit
from services.core.runtime import Runtime
from services.notifier import persistence
from services.notifier.persistence import PreferenceRow
from services.notifier.preferences import (
    CLOCK_PATTERN,
    DEFAULT_DIGEST_HOUR,
    DEFAULT_MODES,
    DEFAULT_TIME_ZONE,
    Mode,
    NoticeKind,
    known_time_zone,
)


def _zone(name: str) -> str:
    if not known_time_zone(name):
        raise ValueError("not an IANA time zone name this server knows (e.g. Europe/Berlin, America/New_York, UTC)")
    return name


TimeZone = Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Berlin"]), AfterValidator(_zone)]
Clock = Annotated[str, Field(pattern=CLOCK_PATTERN, description="a local time of day, HH:MM (24-hour)")]


class QuietHours(BaseModel):
    """No notice is sent from `start` to `end` (local); may wrap midnight (22:00 to 07:00)."""

    model_config = ConfigDict(extra="forbid")

    start: Clock
    end: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are the same time: give quiet hours that last, or none (null)")
        return self


class EmailModes(BaseModel):
    """Per kind of notice: `immediate`, `digest` (the daily digest) or `off`."""

    model_config = ConfigDict(extra="forbid")

    approval_needed: Mode = DEFAULT_MODES[NoticeKind.APPROVAL_NEEDED]
    document_published: Mode = DEFAULT_MODES[NoticeKind.DOCUMENT_PUBLISHED]
    reminder: Mode = DEFAULT_MODES[NoticeKind.REMINDER]
    escalation: Mode = DEFAULT_MODES[NoticeKind.ESCALATION]

    @field_validator("approval_needed", "document_published")
    @classmethod
    def _never_off(cls, mode: Mode) -> Mode:
        if mode is Mode.OFF:
            raise ValueError("cannot be off: others wait on it (choose immediate or digest)")
        return mode


class Channels(BaseModel):
    """Where notices go; only `email` today."""

    model_config = ConfigDict(extra="forbid")

    email: EmailModes = Field(default_factory=EmailModes)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time_zone: TimeZone = DEFAULT_TIME_ZONE
    quiet_hours: QuietHours | None = None
    digest_hour: Annotated[int, Strict(), Field(ge=0, le=23, description="local hour of the daily digest")] = (
        DEFAULT_DIGEST_HOUR
    )
    channels: Channels = Field(default_factory=Channels)


class PreferencesOut(PreferencesIn):
    updated_at: datetime | None = Field(description="null: never changed, these are the defaults")


def _out(row: PreferenceRow | None) -> PreferencesOut:
    if row is None:
        return PreferencesOut(updated_at=None)
    quiet = QuietHours(start=row.quiet_start, end=row.quiet_end) if row.quiet_start and row.quiet_end else None
    return PreferencesOut(
        time_zone=row.time_zone,
        quiet_hours=quiet,
        digest_hour=row.digest_hour,
        channels=Channels.model_validate(row.modes),
        updated_at=row.updated_at,
    )


def _person(caller: Caller) -> uuid.UUID:
    """The caller's principal id: only a person has preferences (a service account is refused)."""
    if caller.principal_id is None or caller.email is None:
        raise Forbidden("only a person has notice preferences; sign in as yourself")
    return caller.principal_id


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["people"])  # included under the notifier's `/v1`

    @router.get("/me/preferences", response_model=PreferencesOut)
    async def read(caller: ReviewsRead) -> PreferencesOut:
        """The caller's notice preferences (the defaults until they change them)."""
        principal_id = _person(caller)
        async with runtime.uow.begin() as session:
            return _out(await persistence.preference_of(session, principal_id))

    @router.put("/me/preferences", response_model=PreferencesOut)
    async def write(request: Request, body: PreferencesIn, caller: ReviewsRead) -> PreferencesOut:
        """Replace the caller's notice preferences (a field left out takes its default). `off` is refused for
        `approval_needed` and `document_published`: others wait on those."""
        principal_id = _person(caller)
        now = datetime.now(UTC)
        async with runtime.uow.begin() as session:
            row = await persistence.preference_of(session, principal_id)
            before = _out(row).model_dump(mode="json", exclude={"updated_at"})
            if row is None:
                row = PreferenceRow(principal_id=principal_id)
                session.add(row)
            row.time_zone = body.time_zone
            row.quiet_start = body.quiet_hours.start if body.quiet_hours else None
            row.quiet_end = body.quiet_hours.end if body.quiet_hours else None
            row.digest_hour = body.digest_hour
            row.modes = body.channels.model_dump(mode="json")
            row.updated_at = now
            await session.flush()
            out = _out(row)
            await audit.record_by(
                session,
                caller,
                action="preferences.update",
                target=f"principal:{principal_id}",
                now=now,
                request_id=request_id(request),
                before=before,
                after=out.model_dump(mode="json", exclude={"updated_at"}),
            )
            return out

    return router
