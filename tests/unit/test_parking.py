"""Which Kafka refusals park an outbox record (retrying cannot help) and which are retried in place."""

from __future__ import annotations

import pytest
from aiokafka import errors

from services.core.bounds import describe, error_text
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


ROW_ERROR = (
    'IntegrityError: null value in column "url" violates not-null constraint\n'
    "DETAIL:  Failing row contains (5f1c, null, whsec_S3cr3t, ...).\n"
    "HINT:  Key (id)=(whsec_S3cr3t) already exists.\x00" + "x" * 5000
)


def test_errors_kept_for_operators_quote_no_row_values_and_fit_their_column() -> None:
    for text in (describe(RuntimeError(ROW_ERROR)), error_text(ROW_ERROR)):
        assert "whsec_" not in text  # readiness and the CLI show these to anyone who can reach them
        assert "\x00" not in text
        assert len(text) <= 2000
        assert "not-null constraint" in text  # what went wrong is still there
