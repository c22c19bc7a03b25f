"""Policies: the loaded set, a dry-run, and the decision stored for each trigger."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.contracts.accepted import TriggerAcceptedV1
from services.core.auth import ReviewsRead
from services.core.http import ProblemError
from services.core.runtime import Runtime
from services.strategy_engine import persistence
from services.strategy_engine.flows.correlation import evaluate
from services.strategy_engine.persistence import open_review
from services.strategy_engine.policies import PolicySet
from services.strategy_engine.transport.dashboard import DecisionOut, decision_out


class DryRunOut(BaseModel):
    policy_id: str
    correlation_key: str
    outcome: str
    reason: str
    severity: str
    review_id: str | None


def build_router(runtime: Runtime, policies: PolicySet) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["policies"])

    @router.get("/policies")
    async def list_policies(_auth: ReviewsRead) -> dict[str, Any]:
        """The policies in force, in evaluation order."""
        return policies.model_dump(mode="json")

    @router.post("/policies/dry-run", response_model=DryRunOut)
    async def dry_run(event: TriggerAcceptedV1, caller: ReviewsRead) -> DryRunOut:
        """What the engine would decide for this `TriggerAccepted` v1 event now, without doing anything (an open
        review the caller is not cleared for is treated as absent)."""
        async with runtime.uow.begin() as session:
            decision = await evaluate(session, policies, event, grants=caller.grants)  # reads only
            attached_to = (
                await open_review(session, decision.correlation_key) if decision.outcome == "attached" else None
            )
        review = str(attached_to.id) if attached_to else None
        return DryRunOut(
            policy_id=decision.policy_id,
            correlation_key=decision.correlation_key,
            outcome=decision.outcome.value,
            reason=decision.reason,
            severity=decision.severity.value,
            review_id=review,
        )

    @router.get("/decisions/by-id", response_model=DecisionOut)
    async def get_decision_by_id(
        caller: ReviewsRead,
        source: Annotated[str, Query(min_length=1, max_length=1000)],
        id: Annotated[str, Query(min_length=1, max_length=1000)],
    ) -> DecisionOut:
        """The same as `GET /v1/decisions/{source}/{id}`, with source and id in the query (ids with a slash)."""
        return await get_decision(source, id, caller)

    @router.get("/decisions/{source:path}/{event_id}", response_model=DecisionOut)
    async def get_decision(source: str, event_id: str, caller: ReviewsRead) -> DecisionOut:
        """The policy decision taken for one trigger (policy, correlation key, outcome, review, reason); one of
        a review the caller is not cleared for is 404, as if there were none."""
        async with runtime.uow.begin() as session:
            row = await persistence.decision_of(session, source=source, event_id=event_id, grants=caller.grants)
        if row is None:
            raise ProblemError(404, "Not Found", f"the engine has no decision for {event_id!r} from {source!r} (yet)")
        return decision_out(row)

    return router
