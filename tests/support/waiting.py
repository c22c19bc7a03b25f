"""Polling helper for asynchronous pipelines: wait for a condition, fail with a clear message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, within: float = 30.0, what: str = ""
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or 'condition'}; last: {value!r}")
        await asyncio.sleep(0.1)
