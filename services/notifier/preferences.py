"""A person's notice preferences and what they decide: which channel gets which kind of notice, at once or in the
daily digest or not at all, and when a notice may go out (never inside the person's quiet hours). Pure: no I/O.

Times are the person's own (an IANA time zone); quiet hours may wrap midnight (22:00 to 07:00). Daylight saving
is zoneinfo's: a quiet-hours end or a digest hour that a clock change skips falls at the next existing time."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum


class NoticeKind(StrEnum):
    """The kinds of notice a person receives."""

    APPROVAL_NEEDED = "approval_needed"
    DOCUMENT_PUBLISHED = "document_published"
    REMINDER = "reminder"
    ESCALATION = "escalation"


class Mode(StrEnum):
    IMMEDIATE = "immediate"
    DIGEST = "digest"
    OFF = "off"


class PersonChannel(StrEnum):
    """Where a person's notices go. Only e-mail today; a chat channel would be one more member (and a sender)."""

    EMAIL = "email"


DEFAULT_MODES: Mapping[NoticeKind, Mode] = {
    NoticeKind.APPROVAL_NEEDED: Mode.IMMEDIATE,
    NoticeKind.DOCUMENT_PUBLISHED: Mode.IMMEDIATE,
    NoticeKind.REMINDER: Mode.DIGEST,
    NoticeKind.ESCALATION: Mode.IMMEDIATE,
}
"""Defaults that do not spam: reminders once a day in the digest, what someone waits on at once."""
NEVER_OFF = frozenset({NoticeKind.APPROVAL_NEEDED, NoticeKind.DOCUMENT_PUBLISHED})
"""Kinds a person cannot turn off (a digest is allowed): others wait on their verdict, or their acknowledgement is
required, so never telling them would stall a review or a campaign without anyone noticing."""
DEFAULT_TIME_ZONE = "UTC"
DEFAULT_DIGEST_HOUR = 8
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_CLOCK = re.compile(CLOCK_PATTERN)


@functools.cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names this machine knows."""
    return frozenset(zoneinfo.available_timezones())


def known_time_zone(name: str) -> bool:
    return name in time_zones()


def clock(text: str) -> time:
    """`HH:MM` (24-hour) as a time; ValueError otherwise."""
    if not _CLOCK.match(text):
        raise ValueError(f"{text!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(text[:2]), int(text[3:]))


@dataclass(frozen=True, kw_only=True)
class Preferences:
    time_zone: str = DEFAULT_TIME_ZONE
    quiet_start: time | None = None
    quiet_end: time | None = None
    digest_hour: int = DEFAULT_DIGEST_HOUR
    modes: Mapping[PersonChannel, Mapping[NoticeKind, Mode]] = field(
        default_factory=lambda: {PersonChannel.EMAIL: dict(DEFAULT_MODES)}
    )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def mode(self, kind: NoticeKind, channel: PersonChannel = PersonChannel.EMAIL) -> Mode:
        return self.modes.get(channel, {}).get(kind, DEFAULT_MODES[kind])

    def quiet(self, now: datetime) -> bool:
        """Whether `now` falls inside the person's quiet hours (start included, end excluded)."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return False
        local = now.astimezone(self.zone).time().replace(tzinfo=None)
        start, end = self.quiet_start, self.quiet_end
        return start <= local < end if start < end else local >= start or local < end

    def release(self, now: datetime) -> datetime:
        """When a notice planned at `now` may go out: now, or the end of the quiet hours it falls in (UTC)."""
        if not self.quiet(now) or self.quiet_end is None:
            return now
        local = now.astimezone(self.zone)
        end_day = local.date() if local.time().replace(tzinfo=None) < self.quiet_end else local.date() + timedelta(1)
        return _local(end_day, self.quiet_end, self.zone)

    def digest_date(self, now: datetime) -> date | None:
        """The local date whose digest is due at `now` (its digest hour has come), else None."""
        local = now.astimezone(self.zone)
        return local.date() if local.hour >= self.digest_hour else None


def _local(day: date, at: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """`day` at `at` in `zone`, as UTC. A time a clock change skipped is read with the offset before the change
    (fold 0), which is the moment after the gap; a time that happens twice is its first occurrence."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
