"""A real SMTP server for the tests (aiosmtpd, in its own thread) on a free loopback port: it records every
message it accepts, and every one it refused after reading it, and can be told to refuse (a reply code at RCPT
or DATA) or be stopped for a while (connection refused) and started again on the same port."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REPLIES = {451: "451 4.3.0 try again later", 550: "550 5.1.1 mailbox unavailable", 552: "552 5.3.4 too big"}


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(kw_only=True)
class MailHandler:
    """aiosmtpd's handler: refuses with `refuse_code` at `refuse_at` ("rcpt" or "data") while it is set."""

    accepted: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)
    refuse_code: int | None = None
    refuse_at: str = "data"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse_code is not None and self.refuse_at == "rcpt":
            return REPLIES[self.refuse_code]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        got = Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        with self.lock:
            if self.refuse_code is not None and self.refuse_at == "data":
                self.refused.append(got)
                return REPLIES[self.refuse_code]
            self.accepted.append(got)
        return "250 OK queued"


class MailServer:
    def __init__(self) -> None:
        self.handler = MailHandler()
        self.port = _free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Until `start`, connecting is refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, code: int | None, *, at: str = "data") -> None:
        self.handler.refuse_code, self.handler.refuse_at = code, at

    @property
    def accepted(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.accepted)

    @property
    def settings(self) -> dict[str, Any]:
        """The SMITS_SMTP_* settings that point smits at this server."""
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_tls": "none", "mail_from": "smits@example.org"}


@contextmanager
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
