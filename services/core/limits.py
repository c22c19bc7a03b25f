"""Request limits: a body-size cap for every route and a per-caller token bucket."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.http import problem_response


class BodyLimit:
    """Refuses bodies over the limit with 413 problem+json: early by Content-Length, else while streaming.

    `limits` maps path prefixes to their own cap (the longest matching prefix wins)."""

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
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await problem_response(413, "Payload Too Large", f"request body over {limit} bytes")(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Past the cap: answer 413 ourselves, then tell the app the client went away (FastAPI would
            # turn an exception raised while reading the body into a 400).
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = True
                await problem_response(413, "Payload Too Large", f"request body over {limit} bytes")(
                    scope, receive, send
                )
                return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self._app(scope, counted, unless_refused)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per caller: `rate` tokens a second up to `burst`; `take` says how long to wait if short."""

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str, cost: float = 1.0) -> float:
        """0 when allowed (and charged); otherwise the seconds until `cost` tokens will be there."""
        now = self._clock()
        bucket = self._buckets.setdefault(caller, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if cost > self._burst:
            cost = self._burst  # a request larger than the burst waits for a full bucket, not forever
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self._rate
