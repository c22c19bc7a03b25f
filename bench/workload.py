"""Benchmark workloads: CloudEvents built from the example triggers, with duplicates and invalid records.

Every valid trigger varies the field its category's default policy correlates on, over about `total / 5`
keys, so that most reviews collect several triggers (one `review.opened`, then `review.trigger_attached`).
Goal changes are left out: their default policy groups a whole period into one review, which would make a
single review (and its strictly ordered webhooks) the subject of the benchmark.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from services.contracts.reviews import ReviewEventType, ReviewEventV1

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "triggers"
STRUCTURED = [("content-type", b"application/cloudevents+json")]

# example file -> (where the correlation key lives, its prefix)
TEMPLATES = {
    "regulation_update.json": ("data.regulation_id", "REG"),
    "merger_acquisition.json": ("data.deal_id", "D"),
    "audit_finding.json": ("data.engagement_id", "ENG"),
    "budget_change.json": ("data.budget_id", "BUD"),
    "vendor_strategy_change.json": ("data.product", "PRD"),
    "business_opportunity.json": ("data.opportunity_id", "OPP"),
    "customer_feedback.json": ("subject", "svc"),
}


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    trigger_id: str | None  # None for invalid records


@dataclass(frozen=True)
class Workload:
    records: list[Record]
    unique: int
    duplicates: int
    invalid: int


@cache
def _templates() -> list[tuple[dict[str, Any], str, str]]:
    """The example triggers, read once (the latency and soak producers build every trigger from them; `trigger`
    copies what it changes)."""
    return [(orjson.loads((EXAMPLES / name).read_bytes()), *where) for name, where in TEMPLATES.items()]


def trigger(
    template: dict[str, Any], where: str, prefix: str, *, run: str, n: int, key: int, at: datetime
) -> dict[str, Any]:
    event = {**template, "id": f"{run}-{n}", "source": "/bench", "time": at.isoformat()}
    event["data"] = dict(template["data"])
    value = f"{prefix}-{key}"
    if where == "subject":
        event["subject"] = value
    else:
        event["data"][where.removeprefix("data.")] = value
    return event


def invalid(n: int, run: str) -> bytes:
    """Four kinds in turn: unknown type, a category field missing, not JSON, no id."""
    base = {"specversion": "1.0", "id": f"{run}-bad-{n}", "source": "/bench", "subject": "x"}
    match n % 4:
        case 0:
            return orjson.dumps({**base, "type": "smits.trigger.weather.v1", "data": {}})
        case 1:
            return orjson.dumps({**base, "type": "smits.trigger.regulation_update.v1", "data": {"title": "no id"}})
        case 2:
            return b"{not json"
        case _:
            return orjson.dumps({k: v for k, v in base.items() if k != "id"} | {"type": "smits.trigger.x.v1"})


def build(
    total: int, *, run: str, seed: int = 7, duplicate_share: float = 0.05, invalid_share: float = 0.01
) -> Workload:
    """`total` records: unique valid triggers, repeats of some of them, and invalid records, shuffled."""
    rng = random.Random(seed)
    duplicates = int(total * duplicate_share)
    bad = int(total * invalid_share)
    unique = total - duplicates - bad
    templates = _templates()
    keys = max(1, unique // (5 * len(templates)))
    at = datetime.now(UTC).replace(microsecond=0)
    valid = []
    for n in range(unique):
        template, where, prefix = templates[n % len(templates)]
        event = trigger(template, where, prefix, run=run, n=n, key=rng.randrange(keys), at=at)
        valid.append(Record(event["subject"].encode(), orjson.dumps(event), event["id"]))
    records = valid + rng.sample(valid, k=duplicates) + [Record(b"x", invalid(n, run), None) for n in range(bad)]
    rng.shuffle(records)
    return Workload(records=records, unique=unique, duplicates=duplicates, invalid=bad)


def regulation(run: str, n: int, *, regulations: int, at: datetime) -> dict[str, Any]:
    """The n-th regulation update over `regulations` regulations, taken in turn: each opens a review (the
    first for its regulation) or attaches to one, so each yields one webhook."""
    template, where, prefix = _templates()[0]
    return trigger(template, where, prefix, run=run, n=n, key=n % regulations, at=at)


def regulation_in_fives(run: str, n: int, *, at: datetime) -> dict[str, Any]:
    """Five consecutive updates per regulation: one `review.opened`, then four `review.trigger_attached`."""
    template, where, prefix = _templates()[0]
    return trigger(template, where, prefix, run=run, n=n, key=n // 5, at=at)


def review_events(count: int) -> list[tuple[bytes, bytes]]:
    """`count` review events (key, value) over count / 5 reviews, five each in sequence, reviews interleaved:
    one review's webhooks must keep their order, different reviews' need not wait for each other."""
    reviews = [uuid.uuid4() for _ in range(max(1, count // 5))]
    now = datetime.now(UTC)
    events: list[tuple[bytes, bytes]] = []
    for sequence in range(1, 6):
        for review in reviews:
            if len(events) == count:
                break
            event = ReviewEventV1(
                id=uuid.uuid4(),
                type=ReviewEventType.OPENED if sequence == 1 else ReviewEventType.TRIGGER_ATTACHED,
                review_id=review,
                sequence=sequence,
                occurred_at=now,
                data={"review_id": str(review), "trigger": {"source": "/bench", "id": f"{review.hex}-{sequence}"}},
                category="regulation_update",
                severity="high",
                scope="bu-payments",
            )
            events.append((str(review).encode(), orjson.dumps(event.model_dump(mode="json"))))
    return events
