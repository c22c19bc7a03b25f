"""The dead letter of a rejected record, bounded to what the producer may send (pure, no I/O).

Contract: original key, value and headers plus the Kafka Connect style `__connect.errors.*` headers (UTF-8).
The error headers are bounded and always present. When the original does not fit beside them, what fits is
kept (the key, then the value, cut if need be, then the headers in order) and `TRUNCATION_HEADER` says what
was cut or dropped, so the record can always be published and never blocks the ones behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.core.bounds import bounded_utf8
from services.trigger_ingest.domain import Rejection

ERROR_HEADER_PREFIX = "__connect.errors."
TRUNCATION_HEADER = "smits-dlt-truncated"
MESSAGE_HEADER_MAX_BYTES = 4096
"""Longest `__connect.errors.exception.message` (UTF-8 bytes)."""
RECORD_OVERHEAD_BYTES = 1024
"""Room for the record batch and record framing (aiokafka counts about 100 bytes); generous on purpose."""
HEADER_OVERHEAD_BYTES = 10
"""Two varints (name and value length) per header."""
NOTE_RESERVE_BYTES = 512
TOPIC_HEADER_MAX_BYTES = 300

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: Headers


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
) -> DeadLetter:
    """The dead letter of the record at `topic`/`partition`/`offset`, at most `max_bytes` when serialised."""
    errors = error_headers(rejection, topic=topic, partition=partition, offset=offset)
    room = max_bytes - RECORD_OVERHEAD_BYTES - NOTE_RESERVE_BYTES - sum(_size(h) for h in errors)
    notes: list[str] = []
    if key is not None and len(key) > room:
        notes.append(f"key dropped ({len(key)} bytes)")
        key = None
    room -= len(key or b"")
    body = value or b""
    if len(body) > room:
        notes.append(f"value cut to its first {room} of {len(body)} bytes")
        body = body[:room]
    room -= len(body)
    kept: Headers = []
    dropped = dropped_bytes = 0
    for name, raw in headers:
        if name.startswith(ERROR_HEADER_PREFIX) or name == TRUNCATION_HEADER:
            continue  # a replayed dead letter's old error headers are replaced, never repeated
        size = _size((name, raw))
        if size <= room and _encodable(name):
            kept.append((name, raw))
            room -= size
        else:
            dropped += 1
            dropped_bytes += size
    if dropped:
        notes.append(f"{dropped} of {len(headers)} header(s) dropped ({dropped_bytes} bytes)")
    note = [(TRUNCATION_HEADER, bounded_utf8("; ".join(notes), NOTE_RESERVE_BYTES))] if notes else []
    return DeadLetter(key=key, value=body, headers=kept + errors + note)


def error_headers(rejection: Rejection, *, topic: str, partition: int, offset: int) -> Headers:
    """The `__connect.errors.*` headers, each bounded."""
    return [
        ("__connect.errors.topic", bounded_utf8(topic, TOPIC_HEADER_MAX_BYTES)),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.class.name", bounded_utf8(f"smits.{rejection.kind}", 200)),
        ("__connect.errors.exception.message", bounded_utf8(rejection.message, MESSAGE_HEADER_MAX_BYTES)),
    ]


def replayable_headers(headers: Sequence[tuple[str, bytes]]) -> Headers:
    """A dead letter's headers as they go back to the input topic: the original ones, without the
    `__connect.errors.*` and truncation headers."""
    return [
        (name, value)
        for name, value in headers
        if not name.startswith(ERROR_HEADER_PREFIX) and name != TRUNCATION_HEADER
    ]


def is_dead_letter_of(headers: Sequence[tuple[str, bytes]], *, topic: str, partition: int, offset: int) -> bool:
    """Whether a dead letter with `headers` is the one of the record at `topic`/`partition`/`offset`."""
    found = {name: value for name, value in headers if name.startswith(ERROR_HEADER_PREFIX)}
    return (
        found.get("__connect.errors.topic") == bounded_utf8(topic, TOPIC_HEADER_MAX_BYTES)
        and found.get("__connect.errors.partition") == str(partition).encode()
        and found.get("__connect.errors.offset") == str(offset).encode()
    )


def truncation_of(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """What was cut from the original to make the dead letter fit, if anything."""
    for name, value in headers:
        if name == TRUNCATION_HEADER:
            return value.decode("utf-8", "replace")
    return None


def serialized_size(letter: DeadLetter) -> int:
    """Bytes the dead letter takes in a record, framing included (an upper bound)."""
    return RECORD_OVERHEAD_BYTES + len(letter.key or b"") + len(letter.value) + sum(map(_size, letter.headers))


def _size(header: tuple[str, bytes]) -> int:
    name, value = header
    return len(name.encode("utf-8", "surrogatepass")) + len(value) + HEADER_OVERHEAD_BYTES


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
