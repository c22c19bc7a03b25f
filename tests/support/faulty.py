"""`smits` with test-only faults, switched on by environment variables; production code carries no hook.

- `SMITS_TEST_POISON_FILE`: the engine's batch flow raises on any record whose event id is listed in that
  file (read at every batch, so a test can lift the fault).
- `SMITS_TEST_DIE_BEFORE_OFFSET_COMMIT=1`: the process dies (exit 137, no cleanup, like `kill -9`) the
  first time a consumer is about to commit offsets to Kafka, i.e. after a batch's database commit.

Run as `python -m tests.support.faulty serve engine ...`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.app import main
from services.core.kafka import BatchConsumer, Message
from services.strategy_engine.flows.correlation import CorrelatedBatch
from services.strategy_engine.flows.correlation import handle_accepted_batch as _real
from services.strategy_engine.policies import PolicySet
from services.strategy_engine.transport import consumer

DIED = 137


class Poisoned(Exception):
    """The injected fault."""


async def _poisoned(
    session: AsyncSession, batch: Sequence[Message], *, policies: PolicySet, now: datetime
) -> CorrelatedBatch:
    poison = set((await asyncio.to_thread(Path(os.environ["SMITS_TEST_POISON_FILE"]).read_text)).split())
    for message in batch:
        event_id = orjson.loads(message.value or b"{}").get("id")
        if event_id in poison:
            raise Poisoned(f"poisoned record {event_id}")
    return await _real(session, batch, policies=policies, now=now)


async def _die(self: BatchConsumer[Any], consumer: object, commits: dict[int, int]) -> None:
    os._exit(DIED)


if os.environ.get("SMITS_TEST_POISON_FILE"):
    vars(consumer)["handle_accepted_batch"] = _poisoned  # the consumer's flow calls it through the module
if os.environ.get("SMITS_TEST_DIE_BEFORE_OFFSET_COMMIT") == "1":
    BatchConsumer._commit = _die  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
