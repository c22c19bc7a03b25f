"""The kinds of domain error a flow may raise; the HTTP edge maps each kind once to a problem type.

Flows never raise HTTP errors: they raise one of these (or a service's subclass from its `errors.py`), and
`services.core.http` turns it into RFC 9457 problem+json with a stable `type` URI per kind. A timer or a
consumer calling the same flow sees a domain error, never an HTTP one.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPES = "https://smits.example/problems/"


class DomainError(Exception):
    """Base of the kinds below; `extra` members (e.g. `guard`, `field`) are added to the problem body."""

    kind: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_TYPES + cls.kind


class NotFound(DomainError):
    kind, status, title = "not-found", 404, "Not Found"


class GuardRefused(DomainError):
    """A rule of the review cycle (or a document's status, an approval's order) refused the change; `guard`
    names the rule. Every refused guard has this one shape."""

    kind, status, title = "guard", 409, "Refused by a guard"

    def __init__(self, guard: str, detail: str) -> None:
        super().__init__(detail, guard=guard)
        self.guard = guard


class Forbidden(DomainError):
    """The caller is who they say, but may not do this (not named on the version, not the recipient, lacks
    the role); the detail says why."""

    kind, status, title = "forbidden", 403, "Forbidden"


class Conflict(DomainError):
    kind, status, title = "conflict", 409, "Conflict"


class Invalid(DomainError):
    """Input that is well-formed but not acceptable; `field` names it."""

    kind, status, title = "invalid", 422, "Unprocessable Content"

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail, field=field)


KINDS: tuple[type[DomainError], ...] = (NotFound, GuardRefused, Forbidden, Conflict, Invalid)
