"""E-mail notices: what a person receives for an event, as one MIME message (text and HTML alternatives rendered
from `templates/mail`, the HTML autoescaped) fixed when its delivery is planned, so every retry and a resend send
the same bytes with the same `Message-ID`.

A document notice tells each recipient what changed since the version they last acknowledged (the event's
`recipients_detail`), links to the document in the console (acknowledged there after sign-in) and, with
`SMITS_LINK_SIGNING_KEY` set, carries a signed, expiring, single-use link that acknowledges without signing in.

Need-to-know: a restricted review's notice names no title, kind, org unit, summary or change summary, and carries
no signed link, whoever receives it (the notifier does not know who is cleared); the link leads to the document,
which shows it to those who are."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import jinja2
from pydantic import SecretStr

from services.core.identity.model import EMAIL_PATTERN, normal_email
from services.core.links import AckLink, sign
from services.core.settings import Settings
from services.notifier.event_data import instant
from services.notifier.event_data import text as text_of

SUBJECT_MAX = 200
"""Characters of a subject kept (a document title may be 500)."""
CHANGES_MAX = 2000
"""Characters of a recipient's change summary shown (the engine bounds it to as much)."""
_EMAIL = re.compile(EMAIL_PATTERN)
_BLANKS = re.compile(r"\s+")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("services.notifier", "templates/mail"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class MailConfig:
    """What planning an e-mail needs of the settings; None from `of` when no mail server is configured."""

    sender: str
    public_url: str
    link_key: SecretStr | None = None
    """Signs the acknowledgement links; None: a notice carries only the link to sign in with."""
    link_grace: timedelta = timedelta(days=7)
    """A signed link expires this long after the acknowledgement's due date."""

    @classmethod
    def of(cls, settings: Settings) -> MailConfig | None:
        if settings.smtp_host is None or settings.mail_from is None:
            return None
        return cls(
            sender=settings.mail_from,
            public_url=settings.public_url.rstrip("/"),
            link_key=settings.link_signing_key,
            link_grace=timedelta(seconds=settings.link_grace_s),
        )


@dataclass(frozen=True, slots=True)
class RecipientDetail:
    """What one recipient is told beyond the notice: the version they last acknowledged (None: none) and what
    changed since."""

    last_acknowledged_version: int | None
    changes: str | None


@dataclass(kw_only=True, frozen=True, slots=True)
class DocumentNotice:
    """A published document version its recipients are asked to acknowledge (`review.document_published`)."""

    document_id: str
    version: int
    title: str | None
    kind: str | None
    summary: str | None
    due: datetime | None
    link: str
    restricted: bool
    details: Mapping[str, RecipientDetail] = field(default_factory=dict)
    """Per recipient (normalised e-mail address)."""

    @property
    def subject(self) -> str:
        if self.restricted or not self.title:
            return f"Please acknowledge version {self.version} of a need-to-know document"
        return one_line(f"Please acknowledge: {self.title}, version {self.version}")


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """Text fit for a header: blanks (line breaks included) collapsed, at most `limit` characters."""
    text = _BLANKS.sub(" ", text).strip()
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def document_notice(data: Mapping[str, Any], *, restricted: bool, public_url: str) -> DocumentNotice | None:
    """The notice of a `review.document_published` event's data; None if it names no document and version."""
    version = data.get("version")
    try:
        document_id = str(uuid.UUID(str(data.get("document_id"))))
    except ValueError:
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        return None
    shown = {} if restricted else data
    return DocumentNotice(
        document_id=document_id,
        version=version,
        title=text_of(shown.get("title")),
        kind=text_of(shown.get("kind")),
        summary=text_of(shown.get("summary")),
        due=instant(data.get("acknowledge_by")),
        link=f"{public_url}/documents/{document_id}",
        restricted=restricted,
        details=_details(data.get("recipients_detail"), restricted=restricted),
    )


def _details(value: object, *, restricted: bool) -> dict[str, RecipientDetail]:
    """The event's `recipients_detail`, by address; malformed entries are skipped, a restricted review's change
    summaries dropped."""
    found: dict[str, RecipientDetail] = {}
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, Mapping):
            continue
        email, last, changes = entry.get("email"), entry.get("last_acknowledged_version"), entry.get("changes")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            continue
        if not isinstance(last, int) or isinstance(last, bool):
            last = None
        shown = None if restricted else text_of(changes)
        found.setdefault(normal_email(email), RecipientDetail(last, shown[:CHANGES_MAX] if shown else None))
    return found


def recipients_of(data: Mapping[str, Any]) -> list[str]:
    """The e-mail addresses on the event's distribution, normalised, each once, in order; others are skipped."""
    found: dict[str, None] = {}
    names = data.get("recipients")
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str) and _EMAIL.match(name.strip()):
            found.setdefault(normal_email(name), None)
    return list(found)


def message_id(delivery_id: uuid.UUID, sender: str) -> str:
    """The `Message-ID` of a delivery: the same on every attempt, so a mail client shows a retry once."""
    return f"<{delivery_id.hex}.smits@{sender.rpartition('@')[2]}>"


def compose(
    notice: DocumentNotice, *, delivery_id: uuid.UUID, recipient: str, config: MailConfig, now: datetime
) -> str:
    """The whole message (headers and both alternatives), 7-bit with CRLF line ends, as sent over SMTP."""
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = notice.subject
    message["From"] = f"smits <{config.sender}>"
    message["To"] = recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(delivery_id, config.sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a notice
    detail = notice.details.get(normal_email(recipient))
    signed = signed_link(notice, recipient=recipient, token_id=delivery_id.hex, config=config, now=now)
    context = {
        "notice": notice,
        "recipient": recipient,
        "changes": detail.changes if detail else None,
        "signed": signed,
    }
    message.set_content(_TEMPLATES.get_template("document_published.txt").render(context), cte="quoted-printable")
    message.add_alternative(
        _TEMPLATES.get_template("document_published.html").render(context), subtype="html", cte="quoted-printable"
    )
    return message.as_string()


@dataclass(frozen=True, slots=True)
class SignedLink:
    url: str
    expires_at: datetime


def signed_link(
    notice: DocumentNotice, *, recipient: str, token_id: str, config: MailConfig, now: datetime
) -> SignedLink | None:
    """The link that acknowledges the version as `recipient` without signing in, until the due date plus the
    grace; None without a signing key, a due date, or for a restricted review (read it first, signed in)."""
    if config.link_key is None or notice.due is None or notice.restricted:
        return None
    expires = notice.due + config.link_grace
    link = AckLink(
        recipient=normal_email(recipient),
        document_id=uuid.UUID(notice.document_id),
        version=notice.version,
        expires_at=expires,
        token_id=token_id,
    )
    token = sign(link, secret=config.link_key.get_secret_value(), now=now)
    return SignedLink(url=f"{config.public_url}/v1/acknowledge-link?token={token}", expires_at=expires)
