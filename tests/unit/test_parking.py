"""Which Kafka refusals park an outbox record (retrying cannot help) and which are retried in place."""

from __future__ import annotations

import pytest
from aiokafka import errors

from services.core.parking import is_permanent


@pytest.mark.parametrize(
    "exc",
    [
        errors.MessageSizeTooLargeError(),
        errors.RecordTooLargeError(),
        errors.RecordListTooLargeError(),
        errors.CorruptRecordException(),
        errors.UnsupportedForMessageFormatError(),
        errors.for_code(87)(),  # INVALID_RECORD, which aiokafka reports as UnknownError
        UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"),
        TypeError("headers must be bytes"),
    ],
)
def test_refusals_no_retry_can_cure_are_permanent(exc: BaseException) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        errors.KafkaTimeoutError(),
        errors.RequestTimedOutError(),
        errors.NotLeaderForPartitionError(),
        errors.KafkaConnectionError(),
        errors.NotEnoughReplicasError(),
        errors.UnknownTopicOrPartitionError(),
        RuntimeError("producer closed"),
    ],
)
def test_transient_failures_are_retried_in_place(exc: BaseException) -> None:
    assert not is_permanent(exc)
