"""One webhook POST under a total deadline, reading at most `RESPONSE_KEEP` bytes of the answer.

Everything the receiver controls is bounded here before it reaches memory, a column or a log line:
- time: one deadline for connect + send + headers + body (a timeout per read would let a receiver answering a
  byte at a time hold a slot for ever);
- size: the body is read raw (no decompression, so no gzip bomb) and only its first bytes are read at all;
  aiohttp refuses a head of more than 128 header lines or a line over 8 KiB (a failed attempt);
- text: kept bytes are decoded leniently and NUL is replaced (PostgreSQL text refuses it), as are errors;
- `Retry-After` is kept only if short; `retries.retry_after` parses it defensively.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from services.core.observability import get_logger
from services.notifier.egress import EgressRefused, WebhookClient
from services.notifier.retries import RETRY_AFTER_MAX_CHARS, AttemptResult

log = get_logger(__name__)

RESPONSE_KEEP = 1000
"""Bytes of a receiver's answer kept (and characters stored) per attempt; beyond them the answer is not read: what
the last network reads brought in (aiohttp stops reading past 128 KiB buffered, one read takes up to 256 KiB) is
discarded with the connection, never drained into the pool."""


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def safe_text(raw: bytes | str, limit: int = RESPONSE_KEEP) -> str:
    """Text any database column accepts: valid UTF-8, no NUL, at most `limit` characters."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates from a str
    return text.replace("\x00", "\ufffd")[:limit]


async def post(client: WebhookClient, request: Request, *, deadline_s: float) -> AttemptResult:
    """POST `request`; the outcome of the attempt. Never raises for anything the receiver does."""
    started = time.perf_counter()
    answer = _Answer()
    try:
        async with asyncio.timeout(deadline_s):
            await _exchange(client, request, answer)
    except TimeoutError:
        answer.error = f"no complete answer within {deadline_s:g} s"
    except (aiohttp.ClientError, EgressRefused, OSError, ValueError) as exc:  # ValueError: a malformed answer
        answer.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a client or transport bug: the attempt is still recorded, never lost or resent
        log.exception("webhook POST failed unexpectedly")
        answer.error = f"{type(exc).__name__}: {exc}"
    return AttemptResult(
        status_code=answer.status_code,
        duration_ms=int((time.perf_counter() - started) * 1000),
        response=safe_text(bytes(answer.body)) if answer.status_code is not None else None,
        error=safe_text(answer.error) if answer.error is not None else None,
        retry_after=answer.retry_after,
    )


class _Answer:
    """What has arrived so far: a deadline that expires while reading the body keeps the status."""

    def __init__(self) -> None:
        self.status_code: int | None = None
        self.retry_after: str | None = None
        self.body = bytearray()
        self.error: str | None = None


async def _exchange(client: WebhookClient, request: Request, answer: _Answer) -> None:
    headers = {**request.headers, "accept-encoding": "identity"}
    async with client.post(request.url, request.body, headers) as r:
        retry_after = r.headers.get("retry-after")
        answer.retry_after = retry_after if retry_after and len(retry_after) <= RETRY_AFTER_MAX_CHARS else None
        answer.status_code = r.status
        while len(answer.body) < RESPONSE_KEEP:  # never more than is kept: an unread rest closes the connection
            chunk = await r.content.read(RESPONSE_KEEP - len(answer.body))
            if not chunk:
                break
            answer.body += chunk
