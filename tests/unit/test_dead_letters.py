"""Dead letters keep the contract's headers and never exceed the producer's maximum request size."""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.bounds import TRUNCATED, bounded, bounded_utf8, storable
from services.trigger_ingest.dead_letters import (
    TRUNCATION_HEADER,
    DeadLetter,
    dead_letter,
    is_dead_letter_of,
    replayable_headers,
    truncation_of,
)
from services.trigger_ingest.domain import Rejection

LIMIT = 64 * 1024
REJECTION = Rejection(kind="UnknownType", message="unknown trigger type 'x'", field="type")


def letter(**changes: object) -> DeadLetter:
    args: dict[str, object] = {
        "key": b"k",
        "value": b"v",
        "headers": [],
        "rejection": REJECTION,
        "topic": "p.triggers",
        "partition": 2,
        "offset": 41,
        "max_bytes": LIMIT,
    }
    args.update(changes)
    return dead_letter(**args)  # type: ignore[arg-type]


def kafka_size(dead: DeadLetter) -> int:
    """What aiokafka checks against max_request_size before sending."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(dead.key, dead.value, dead.headers))


def test_dead_letter_keeps_the_originals_and_adds_connect_errors() -> None:
    dead = letter(headers=[("trace", b"\xff"), ("__connect.errors.topic", b"old")])
    assert dead.headers[0] == ("trace", b"\xff")
    as_dict = dict(dead.headers)
    assert as_dict["__connect.errors.topic"] == b"p.triggers"
    assert as_dict["__connect.errors.partition"] == b"2"
    assert as_dict["__connect.errors.offset"] == b"41"
    assert as_dict["__connect.errors.exception.class.name"] == b"smits.UnknownType"
    assert as_dict["__connect.errors.exception.message"] == b"unknown trigger type 'x'"
    assert len([name for name, _ in dead.headers if name == "__connect.errors.topic"]) == 1
    assert TRUNCATION_HEADER not in as_dict
    assert (dead.key, dead.value) == (b"k", b"v")


def test_an_original_too_large_to_fit_is_cut_and_the_cut_is_named() -> None:
    dead = letter(value=b"x" * LIMIT, headers=[("big", b"y" * LIMIT), ("small", b"s")])
    assert kafka_size(dead) <= LIMIT
    note = dict(dead.headers)[TRUNCATION_HEADER].decode()
    assert f"of {LIMIT} bytes" in note
    assert "2 of 2 header(s) dropped" in note
    assert dead.value == b"x" * len(dead.value)
    assert 0 < len(dead.value) < LIMIT
    assert dict(dead.headers)["__connect.errors.exception.message"] == b"unknown trigger type 'x'"


def test_a_huge_reason_is_bounded_in_its_header() -> None:
    dead = letter(rejection=Rejection(kind="InvalidData", message="é" * 100_000))
    message = dict(dead.headers)["__connect.errors.exception.message"]
    assert len(message) <= 4096
    assert message.decode().endswith(TRUNCATED)


@settings(max_examples=60, deadline=None)
@given(
    key=st.none() | st.binary(max_size=200) | st.integers(0, 2 * LIMIT).map(lambda n: b"k" * n),
    value=st.none() | st.binary(max_size=200) | st.integers(0, 2 * LIMIT).map(lambda n: b"v" * n),
    headers=st.lists(
        st.tuples(
            st.text(max_size=30) | st.integers(0, LIMIT).map(lambda n: "n" * n),
            st.binary(max_size=30) | st.integers(0, LIMIT).map(lambda n: b"h" * n),
        ),
        max_size=6,
    ),
    message=st.text(max_size=20) | st.integers(0, 3 * LIMIT).map(lambda n: "m" * n),
)
def test_every_dead_letter_fits_the_producer_limit(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], message: str
) -> None:
    dead = letter(key=key, value=value, headers=headers, rejection=Rejection(kind="X", message=message))
    assert kafka_size(dead) <= LIMIT
    whole = DeadLetter(key, value or b"", [*headers, *dead.headers[-5:]])
    if kafka_size(whole) + 2048 <= LIMIT:  # the original fits beside the error headers: nothing is cut
        assert TRUNCATION_HEADER not in dict(dead.headers)
        assert (dead.key, dead.value) == (key, value or b"")


def test_bounded_text_ends_with_the_marker_and_escapes_what_databases_refuse() -> None:
    assert bounded("abc", 3) == "abc"
    cut = bounded("x" * 400, 300)
    assert len(cut) == 300
    assert cut.endswith(TRUNCATED)
    assert storable("a\x00b") == "a\\x00b"
    assert storable("a\udc80") == "a\\udc80"
    assert len(bounded_utf8("é" * 5000, 101)) <= 101
    assert bounded_utf8("é" * 5000, 101).decode().endswith(TRUNCATED)


def test_a_dead_letter_names_its_original_position_and_replays_with_the_original_headers_only() -> None:
    dead = letter(headers=[("trace", b"\xff"), ("content-type", b"application/json")])
    assert is_dead_letter_of(dead.headers, topic="p.triggers", partition=2, offset=41)
    assert not is_dead_letter_of(dead.headers, topic="p.triggers", partition=2, offset=4)
    assert not is_dead_letter_of(dead.headers, topic="p.triggers", partition=1, offset=41)
    assert not is_dead_letter_of(dead.headers, topic="q.triggers", partition=2, offset=41)
    assert not is_dead_letter_of([("trace", b"x")], topic="p.triggers", partition=2, offset=41)
    assert replayable_headers(dead.headers) == [("trace", b"\xff"), ("content-type", b"application/json")]
    assert truncation_of(dead.headers) is None


def test_a_cut_dead_letter_says_what_was_cut_when_replayed() -> None:
    dead = letter(value=b"v" * (2 * LIMIT))
    assert truncation_of(dead.headers) is not None
    assert "value cut" in (truncation_of(dead.headers) or "")
    assert TRUNCATION_HEADER not in dict(replayable_headers(dead.headers))
