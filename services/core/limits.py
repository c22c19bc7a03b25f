"""Request limits: a guard on every request (body size, NUL characters) and a token bucket per caller
(`CallerTokenBuckets`; webhooks are paced per subscription by `notifier.retries.SubscriptionPace`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.http import problem_response

NUL_PATTERNS = (b"\x00", b"\\u0000", b"%00")
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 5.0
"""After refusing a request, the guard reads and drops up to this much more of its body (for at most this
long) so that a client still sending reads the answer rather than a connection reset."""


class RequestGuard:
    """Refuses, as problem+json: bodies over the size limit (413, early by Content-Length, else while
    streaming) and NUL characters in the path, query or body (400; no database column can hold them).
    The rest of a refused body is drained (bounded by `DRAIN_BYTES` and `DRAIN_SECONDS`); the app, if it
    was reading, sees the client go away (`ClientDisconnect`, answered by nobody: the client has its 4xx).

    `limits` maps path prefixes to their own size cap (the longest matching prefix wins)."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self._app = app
        self._default = default
        self._limits = sorted(limits.items(), key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self._limits if path.startswith(prefix)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
        if "\x00" in scope["path"] or any(pattern in target for pattern in NUL_PATTERNS):
            await _nul_refused()(scope, receive, send)
            await _drain(receive)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, limit)(scope, receive, send)
            if int(declared) <= DRAIN_BYTES:  # past that the client gets a reset anyway: spare the work
                await _drain(receive)
            return
        seen = 0
        refused = False
        tail = b""  # the end of the previous chunk, so a NUL escape split across chunks is still found

        async def counted() -> Message:
            # Past the cap: answer 413 ourselves, then tell the app the client went away (FastAPI would
            # turn an exception raised while reading the body into a 400).
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            nonlocal tail
            message = await receive()
            body = message.get("body", b"")
            seen += len(body)
            answer = None
            if any(pattern in tail + body for pattern in NUL_PATTERNS[:2]):
                answer = _nul_refused()
            elif seen > limit:
                answer = _too_large(scope, limit)
            if answer is not None:
                refused = True
                await answer(scope, receive, send)
                if message.get("more_body", False):
                    await _drain(receive)
                return {"type": "http.disconnect"}
            tail = body[-5:]
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self._app(scope, counted, unless_refused)


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of a refused request's body, within `DRAIN_BYTES` and `DRAIN_SECONDS`
    (past them the server closes the connection: a client sending that much more gets a reset)."""
    left = DRAIN_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while left > 0:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                left -= len(message.get("body", b""))


FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")
TOO_LARGE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>The form is too large · smits</title></head><body><main><h1>The form is too large</h1>
<p>It is over {limit:,} bytes, so nothing was sent or saved. Go back,
shorten the text, and send it again.</p><p><a href="/">Back to My work</a></p></main></body></html>"""


def _too_large(scope: Scope, limit: int) -> Any:
    """413: a page in words for a browser's form (the console), problem+json for everything else."""
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type in FORMS and not scope["path"].startswith(("/v1/", "/auth/")):
        headers = {"cache-control": "no-store", "x-frame-options": "DENY"}
        return HTMLResponse(TOO_LARGE_PAGE.format(limit=limit), status_code=413, headers=headers)
    return problem_response(413, "Payload Too Large", f"request body over {limit} bytes")


def _nul_refused() -> Any:
    return problem_response(400, "Bad Request", "NUL characters are not accepted in requests")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class CallerTokenBuckets:
    """Token bucket per caller: `rate` tokens a second up to `burst`; `take` says how long to wait if short."""

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def wait(self, caller: str) -> float:
        """Seconds until `caller` has a token at all (0 if it has): checked before the work of reading a
        request, so a caller over its rate costs no parsing; charges nothing."""
        bucket = self._refilled(caller)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self._rate

    def take(self, caller: str, cost: float = 1.0) -> float:
        """0 when allowed (and charged); otherwise the seconds until `cost` tokens will be there."""
        bucket = self._refilled(caller)
        needed = min(cost, self._burst)  # a request larger than the burst waits for a full bucket, not forever
        if bucket.tokens >= needed:
            bucket.tokens -= cost  # the whole cost: below zero, the caller repays it before its next request
            return 0.0
        return (needed - bucket.tokens) / self._rate

    def _refilled(self, caller: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(caller, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        return bucket
