"""Hypothesis strategies for Kafka records aimed at the trigger parser: mostly garbage, some near-valid."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

VALID_DATA = {
    "regulation_id": "DORA",
    "title": "t",
    "jurisdiction": "EU",
    "issuing_body": "EP",
    "change_type": "new",
    "effective_date": "2027-01-17",
}
SOME_VALID_FIELDS = {key: st.just(value) for key, value in VALID_DATA.items()}
TYPES = st.sampled_from(
    ["smits.trigger.regulation_update.v1"] * 4 + ["smits.trigger.goal_change.v1", "smits.trigger.unknown.v1", ""]
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def structured_events(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = {
        "specversion": draw(st.sampled_from(["1.0", "1.0", "1.0", "0.3"])),
        "id": draw(st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=12))),
        "source": draw(st.sampled_from(["/s", "/s", "/s", "", "/\x00"])),
        "type": draw(TYPES),
        "data": draw(
            st.one_of(
                st.just(VALID_DATA),
                JSON,
                st.fixed_dictionaries({}, optional=SOME_VALID_FIELDS),
            )
        ),
    }
    for optional, strategy in (
        ("subject", st.text(max_size=600)),
        ("time", st.text(max_size=30)),
        ("severity", st.text(max_size=10)),
    ):
        if draw(st.booleans()):
            event[optional] = draw(strategy)
    return json.dumps(event).encode()  # stdlib: also writes integers beyond 64 bits


def kafka_values() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), structured_events())


def kafka_headers() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    names = st.one_of(
        st.sampled_from(["content-type", "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "x"]),
        st.text(max_size=12),
    )
    values = st.one_of(
        st.sampled_from([b"application/cloudevents+json", b"application/json", b"1.0", b"\xff\xfe"]),
        st.binary(max_size=20),
    )
    return st.lists(st.tuples(names, values), max_size=6)


Record = tuple[bytes | None, list[tuple[str, bytes]]]
STRUCTURED = ("content-type", b"application/cloudevents+json")


def kafka_records() -> st.SearchStrategy[Record]:
    """Garbage with random headers, or a (near-)valid structured event with the structured content type."""
    garbage = st.tuples(st.one_of(st.none(), kafka_values()), kafka_headers())
    structured = st.tuples(structured_events(), kafka_headers().map(lambda headers: [STRUCTURED, *headers]))
    return st.one_of(garbage, structured)
