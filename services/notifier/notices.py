"""Person notices (pure): which people a review event is for, as what kind of notice, and the e-mail of each —
one per person (a template per kind in `templates/mail`, text and HTML, the HTML autoescaped) or one daily digest
listing many. A published document's notice is `mail.py`'s (`document_notice`, `compose`).

Need-to-know: a restricted review's notice names no title, category, scope or document kind, only what it is
about and its ids (in the link), as the document notice does; whoever receives it signs in to read more."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import jinja2

from services.contracts.reviews import ReviewEventType, ReviewEventV1
from services.core.identity.model import EMAIL_PATTERN, normal_email
from services.notifier.event_data import instant
from services.notifier.event_data import text as text_of
from services.notifier.mail import MailConfig, compose, document_notice, message_id, one_line, recipients_of
from services.notifier.preferences import NoticeKind

_EMAIL = re.compile(EMAIL_PATTERN)
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("services.notifier", "templates/mail"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
APPROVAL = "approval"
"""The review state in which approvers give their verdicts."""

Render = Callable[[uuid.UUID, MailConfig, datetime], str]
"""A notice's whole message for a delivery id (its `Message-ID`), the mail settings and the time it is planned."""


@dataclass(frozen=True, kw_only=True)
class Notice:
    """What one of the kinds composed here says (the document notice is `mail.DocumentNotice`)."""

    kind: NoticeKind
    subject: str
    lead: str
    facts: tuple[tuple[str, str], ...]
    link: str
    restricted: bool


@dataclass(frozen=True, kw_only=True)
class PersonNotice:
    """One notice for one person: `subject` is also its line in a digest."""

    recipient: str
    kind: NoticeKind
    subject: str
    link: str | None
    render: Render


@dataclass(frozen=True, kw_only=True)
class DigestLine:
    kind: str
    subject: str
    link: str | None
    at: datetime


def person_notices(event: ReviewEventV1, *, public_url: str) -> list[PersonNotice]:
    """The people `event` is for, each once, with their notice; [] for an event no person is told of."""
    data = event.data
    if event.type is ReviewEventType.DOCUMENT_PUBLISHED:
        document = document_notice(data, restricted=event.restricted, public_url=public_url)
        if document is None:
            return []
        return [
            PersonNotice(
                recipient=recipient,
                kind=NoticeKind.DOCUMENT_PUBLISHED,
                subject=document.subject,
                link=document.link,
                render=_document(document, recipient),
            )
            for recipient in recipients_of(data)
        ]
    found = _notice(event, public_url=public_url)
    if found is None:
        return []
    notice, people = found
    return [
        PersonNotice(
            recipient=person, kind=notice.kind, subject=notice.subject, link=notice.link, render=_own(notice, person)
        )
        for person in people
    ]


def _notice(event: ReviewEventV1, *, public_url: str) -> tuple[Notice, list[str]] | None:
    data, review_link = event.data, f"{public_url}/reviews/{event.review_id}"
    what = _review(event)
    due = instant(data.get("due_at"))
    asked_now = event.type is ReviewEventType.TRANSITIONED and data.get("to") == APPROVAL
    next_in_line = event.type is ReviewEventType.APPROVAL_RECORDED and bool(data.get("approvers"))
    if asked_now or next_in_line:  # into approval: those asked; in a sequence, the next once the previous approved
        notice = Notice(
            kind=NoticeKind.APPROVAL_NEEDED,
            subject=one_line(f"Your approval is needed: {what}"),
            lead=f"{_cap(what)} is in approval, and you are named as one of its approvers"
            + (" (the approvals before yours are in)." if next_in_line else "."),
            facts=_facts(("Phase due", due)),
            link=review_link,
            restricted=event.restricted,
        )
        return notice, _addresses(data.get("approvers"))
    if event.type is ReviewEventType.ESCALATED:
        level, days = data.get("level"), data.get("days_overdue")
        phase = _phase(data)
        notice = Notice(
            kind=NoticeKind.ESCALATION,
            subject=one_line(f"Escalation{_level(level)}: {what} is overdue{_days(days)}"),
            lead=f"The {phase} phase of {what} is overdue, and it is escalated to you{_level(level, ' at level ')}.",
            facts=_facts(("Phase was due", due), ("Owner", None if event.restricted else text_of(data.get("owner")))),
            link=review_link,
            restricted=event.restricted,
        )
        return notice, _addresses([data.get("target")])
    if event.type is ReviewEventType.OVERDUE:
        phase = _phase(data)
        notice = Notice(
            kind=NoticeKind.REMINDER,
            subject=one_line(f"Overdue: the {phase} phase of {what}"),
            lead=f"The {phase} phase of {what}, which you own, is overdue.",
            facts=_facts(("Was due", due)),
            link=review_link,
            restricted=event.restricted,
        )
        return notice, _addresses([data.get("owner")])
    if event.type is ReviewEventType.ACKNOWLEDGEMENT_DUE:
        return _acknowledgement(event, due=due, public_url=public_url, overdue=True)
    if event.type is ReviewEventType.REMINDER:
        if data.get("about") == "acknowledgement":
            return _acknowledgement(event, due=due, public_url=public_url, overdue=False)
        phase = _phase(data)
        notice = Notice(
            kind=NoticeKind.REMINDER,
            subject=one_line(f"Reminder: the {phase} phase of {what} is due {_day(due)}"),
            lead=f"The {phase} phase of {what}, which you own, is due soon.",
            facts=_facts(("Due", due)),
            link=review_link,
            restricted=event.restricted,
        )
        return notice, _addresses([data.get("recipient")])
    return None


def _acknowledgement(
    event: ReviewEventV1, *, due: datetime | None, public_url: str, overdue: bool
) -> tuple[Notice, list[str]] | None:
    data = event.data
    try:
        document_id = str(uuid.UUID(str(data.get("document_id"))))
    except ValueError:
        return None
    version = data.get("version")
    version_words = f"version {version}" if isinstance(version, int) and not isinstance(version, bool) else "a version"
    kind = None if event.restricted else text_of(data.get("kind"))
    document = f"a {kind.replace('_', ' ')}" if kind else "a document"
    if overdue:
        subject = f"Due now: your acknowledgement of {version_words} of {document}"
        lead = f"Your acknowledgement of {version_words} of {document} is due, and not given yet."
    else:
        subject = f"Reminder: please acknowledge {version_words} of {document} by {_day(due)}"
        lead = f"Please read and acknowledge {version_words} of {document}."
    notice = Notice(
        kind=NoticeKind.REMINDER,
        subject=one_line(subject),
        lead=lead,
        facts=_facts(("Due", due)),
        link=f"{public_url}/documents/{document_id}",
        restricted=event.restricted,
    )
    return notice, _addresses([data.get("recipient")])


def _document(document: Any, recipient: str) -> Render:
    def render(delivery_id: uuid.UUID, config: MailConfig, now: datetime) -> str:
        return compose(document, delivery_id=delivery_id, recipient=recipient, config=config, now=now)

    return render


def _own(notice: Notice, recipient: str) -> Render:
    def render(delivery_id: uuid.UUID, config: MailConfig, now: datetime) -> str:
        context = {"notice": notice, "recipient": recipient}
        return _message(
            subject=notice.subject,
            template=notice.kind.value,
            context=context,
            delivery_id=delivery_id,
            recipient=recipient,
            config=config,
            now=now,
        )

    return render


def compose_digest(
    lines: Sequence[DigestLine], *, day: date, delivery_id: uuid.UUID, recipient: str, config: MailConfig, now: datetime
) -> str:
    """One person's digest of `day` (their local date): every line, oldest first."""
    subject = f"smits daily digest, {day.isoformat()}: {len(lines)} notice{'s' if len(lines) != 1 else ''}"
    return _message(
        subject=subject,
        template="digest",
        context={"lines": lines, "day": day, "recipient": recipient},
        delivery_id=delivery_id,
        recipient=recipient,
        config=config,
        now=now,
    )


def _message(
    *,
    subject: str,
    template: str,
    context: Mapping[str, object],
    delivery_id: uuid.UUID,
    recipient: str,
    config: MailConfig,
    now: datetime,
) -> str:
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = one_line(subject)
    message["From"] = f"smits <{config.sender}>"
    message["To"] = recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(delivery_id, config.sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a notice
    message.set_content(_TEMPLATES.get_template(f"{template}.txt").render(context), cte="quoted-printable")
    html = _TEMPLATES.get_template(f"{template}.html").render(context)
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_string()


def _review(event: ReviewEventV1) -> str:
    """How a notice names the review: never more than its severity, category and scope, and for a restricted
    (need-to-know) review nothing at all."""
    if event.restricted:
        return "a need-to-know review"
    words = " ".join(part.replace("_", " ") for part in (event.severity, event.category) if part)
    named = f"a {words} review" if words else "a review"
    return f"{named} ({event.scope})" if event.scope else named


def _addresses(values: object) -> list[str]:
    found: dict[str, None] = {}
    for value in values if isinstance(values, list) else []:
        if isinstance(value, str) and _EMAIL.match(value.strip()):
            found.setdefault(normal_email(value), None)
    return list(found)


def _facts(*pairs: tuple[str, object]) -> tuple[tuple[str, str], ...]:
    shown: list[tuple[str, str]] = []
    for label, value in pairs:
        if isinstance(value, datetime):
            shown.append((label, value.strftime("%A %d %B %Y, %H:%M UTC")))
        elif isinstance(value, str):
            shown.append((label, value))
    return tuple(shown)


def _phase(data: Mapping[str, Any]) -> str:
    phase = text_of(data.get("phase"))
    return phase.replace("_", " ") if phase else "current"


def _level(level: object, prefix: str = " level ") -> str:
    return f"{prefix}{level}" if isinstance(level, int) and not isinstance(level, bool) else ""


def _days(days: object) -> str:
    if isinstance(days, int | float) and not isinstance(days, bool) and days >= 0:
        return f" by {days:g} day{'s' if days != 1 else ''}"
    return ""


def _day(due: datetime | None) -> str:
    return due.strftime("%d %B %Y") if due else "soon"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def recipients(notices: Iterable[PersonNotice]) -> set[str]:
    return {notice.recipient for notice in notices}
