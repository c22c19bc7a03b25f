"""The preferences API's shape follows the notifier's kinds of notice: one field per kind, `off` refused exactly for
the kinds others wait on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.notifier.preferences import NEVER_OFF, Mode, NoticeKind
from services.notifier.transport.preferences import EmailModes


def test_every_kind_of_notice_has_a_field() -> None:
    assert {NoticeKind(name) for name in EmailModes.model_fields} == set(NoticeKind)


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_off_is_refused_exactly_for_the_kinds_others_wait_on(kind: NoticeKind) -> None:
    if kind in NEVER_OFF:
        with pytest.raises(ValidationError, match="cannot be off"):
            EmailModes.model_validate({kind.value: Mode.OFF.value})
    else:
        assert getattr(EmailModes.model_validate({kind.value: Mode.OFF.value}), kind.value) is Mode.OFF
