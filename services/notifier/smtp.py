"""One e-mail handed to the mail server (aiosmtplib) under a total deadline; the outcome as an attempt.

The SMTP reply code stands where a webhook's HTTP status does (`AttemptResult.status_code`): 2yz is success in
both, anything else is retried on the delivery schedule; no answer at all (refused, reset, timed out) has none.
Never raises for anything the server does, so every attempt is recorded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiosmtplib

from services.core.observability import get_logger
from services.core.settings import Settings
from services.notifier.retries import AttemptResult
from services.notifier.sending import safe_text

log = get_logger(__name__)


@dataclass(kw_only=True, frozen=True, slots=True)
class MailServer:
    host: str
    port: int
    tls: str
    user: str | None
    password: str | None
    sender: str
    timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> MailServer | None:
        if settings.smtp_host is None or settings.mail_from is None:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port_or_default,
            tls=settings.smtp_tls,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sender=settings.mail_from,
            timeout_s=settings.delivery_timeout_s,
        )


async def send(server: MailServer, *, recipient: str, message: str) -> AttemptResult:
    """Send `message` (the whole stored message) to `recipient` in one SMTP session."""
    started = time.perf_counter()
    code: int | None = None
    error: str | None = None
    response: str | None = None
    try:
        async with asyncio.timeout(server.timeout_s):
            _replies, answer = await aiosmtplib.send(
                message.encode("ascii", errors="replace"),
                sender=server.sender,
                recipients=[recipient],
                hostname=server.host,
                port=server.port,
                username=server.user,
                password=server.password,
                use_tls=server.tls == "implicit",
                start_tls=server.tls == "starttls",
                timeout=server.timeout_s,
            )
        code, response = 250, answer
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients[0] if exc.recipients else None
        code = refused.code if refused else None
        error = f"recipient refused: {refused.message if refused else exc.message}"
    except aiosmtplib.SMTPResponseException as exc:
        code, error = exc.code, f"{type(exc).__name__}: {exc.message}"
    except TimeoutError:
        error = f"no answer within {server.timeout_s:g} s"
    except (aiosmtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a client bug: the attempt is still recorded, never lost or resent at once
        log.exception("sending an e-mail failed unexpectedly")
        error = f"{type(exc).__name__}: {exc}"
    return AttemptResult(
        status_code=code,
        duration_ms=int((time.perf_counter() - started) * 1000),
        response=safe_text(response) if response is not None else None,
        error=safe_text(error) if error is not None else None,
        retry_after=None,
    )
