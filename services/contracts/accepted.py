"""`TriggerAccepted` v1: what ingest hands to the engine on `triggers.accepted`, keyed by scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from services.contracts.triggers import Category, Severity


class TriggerAcceptedV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["TriggerAccepted"] = "TriggerAccepted"
    version: Literal[1] = 1
    source: str
    id: str
    type: str
    category: Category
    severity: Severity
    subject: str
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]
    trace_id: str | None = None
