"""The loop both delivery workers run (webhooks and chat in `delivery.py`, e-mail in `mailing.py`): claim what is
due, and when nothing more is claimable wait to be woken (something was planned, a slot freed) or for the poll
interval. A failed claim is logged and tried again; it never ends the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from services.core.observability import get_logger

log = get_logger(__name__)


async def claim_until_stopped(
    *, what: str, dispatch: Callable[[], Awaitable[bool]], wake: asyncio.Event, poll_s: float, stop: asyncio.Event
) -> None:
    """Until `stop` is set: `dispatch()` (True: look again at once), else wait for `wake` or `poll_s`."""
    while not stop.is_set():
        wake.clear()
        try:
            busy = await dispatch()
        except Exception:
            log.exception("claiming failed; will retry", what=what)
            busy = False
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
