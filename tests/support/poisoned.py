"""`smits` with one test-only fault: the engine's batch flow raises on any record whose event id is listed
in the file named by `SMITS_TEST_POISON_FILE` (read at every batch, so a test can lift the fault).

Run as `python -m tests.support.poisoned serve engine ...`; production code carries no fault hook.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cli import main
from services.core.kafka import Message
from services.strategy_engine.flows.correlation import handle_accepted_batch as _real
from services.strategy_engine.policies import Decision, PolicySet
from services.strategy_engine.transport import consumer


class Poisoned(Exception):
    """The injected fault."""


async def _poisoned(
    session: AsyncSession, batch: Sequence[Message], *, policies: PolicySet, now: datetime
) -> list[Decision]:
    poison = set((await asyncio.to_thread(Path(os.environ["SMITS_TEST_POISON_FILE"]).read_text)).split())
    for message in batch:
        event_id = orjson.loads(message.value or b"{}").get("id")
        if event_id in poison:
            raise Poisoned(f"poisoned record {event_id}")
    return await _real(session, batch, policies=policies, now=now)


vars(consumer)["handle_accepted_batch"] = _poisoned  # the consumer's flow calls it through the module

if __name__ == "__main__":
    main()
