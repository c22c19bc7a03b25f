"""One webhook POST under a total deadline, reading at most `RESPONSE_KEEP` bytes of the answer, through either
client `egress` builds: aiohttp (`webhook_session`, the delivery worker's) or httpx (`webhook_client`).

Everything the receiver controls is bounded here before it reaches memory, a column or a log line:
- time: one deadline for connect + send + headers + body (a client's own timeouts bound each read, so a
  receiver answering a byte at a time could otherwise hold a slot for ever);
- size: the body is streamed raw (no decompression, so no gzip bomb) and only its first bytes are kept; an
  answer left unread closes its connection (never drained into the pool);
- text: kept bytes are decoded leniently and NUL is replaced (PostgreSQL text refuses it), as are errors;
- `Retry-After` is kept only if short; `retries.retry_after` parses it defensively.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import httpx

from services.core.observability import get_logger
from services.notifier.egress import EgressRefused
from services.notifier.retries import RETRY_AFTER_MAX_CHARS, AttemptResult

log = get_logger(__name__)

Client = aiohttp.ClientSession | httpx.AsyncClient

RESPONSE_KEEP = 1000
"""Bytes of a receiver's answer kept (and characters stored) per attempt; beyond them the answer is not read
(what the last network read brought in, at most 256 KiB with aiohttp and 64 KiB with httpx, is discarded)."""


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


async def post(client: Client, request: Request, *, deadline_s: float) -> AttemptResult:
    """POST `request`; the outcome of the attempt. Never raises for anything the receiver does."""
    started = time.perf_counter()
    answer = _Answer()
    try:
        async with asyncio.timeout(deadline_s):
            if isinstance(client, aiohttp.ClientSession):
                await _exchange_aiohttp(client, request, answer)
            else:
                await _exchange(client, request, answer, per_read_s=deadline_s)
    except TimeoutError:
        answer.error = f"no complete answer within {deadline_s:g} s"
    except (aiohttp.ClientError, httpx.HTTPError, EgressRefused, OSError, ValueError) as exc:  # ValueError: malformed
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


async def close(client: Client) -> None:
    if isinstance(client, aiohttp.ClientSession):
        await client.close()
    else:
        await client.aclose()


async def _exchange_aiohttp(session: aiohttp.ClientSession, request: Request, answer: _Answer) -> None:
    headers = {**request.headers, "accept-encoding": "identity"}
    async with session.post(request.url, data=request.body, headers=headers, allow_redirects=False) as r:
        retry_after = r.headers.get("retry-after")
        answer.retry_after = retry_after if retry_after and len(retry_after) <= RETRY_AFTER_MAX_CHARS else None
        answer.status_code = r.status
        while len(answer.body) < RESPONSE_KEEP:  # an answer left unread closes its connection, never drained
            chunk = await r.content.read(RESPONSE_KEEP - len(answer.body))
            if not chunk:
                break
            answer.body += chunk


async def _exchange(client: httpx.AsyncClient, request: Request, answer: _Answer, *, per_read_s: float) -> None:
    headers = {**request.headers, "accept-encoding": "identity"}
    async with client.stream("POST", request.url, content=request.body, headers=headers, timeout=per_read_s) as r:
        retry_after = r.headers.get("retry-after")
        answer.retry_after = retry_after if retry_after and len(retry_after) <= RETRY_AFTER_MAX_CHARS else None
        answer.status_code = r.status_code
        async for chunk in r.aiter_raw():  # at most one network read (64 KiB) beyond what is kept
            answer.body += chunk[: RESPONSE_KEEP - len(answer.body)]
            if len(answer.body) >= RESPONSE_KEEP:
                break
