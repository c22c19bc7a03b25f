"""The engine's domain errors: what its flows raise (mapped to problem types at the HTTP edge by core)."""

from __future__ import annotations

from services.core.errors import Conflict, Forbidden, GuardRefused, Invalid, NotFound

__all__ = ["Conflict", "Forbidden", "GuardRefused", "Invalid", "NotFound", "ReviewNotFound"]


class ReviewNotFound(NotFound):
    def __init__(self, review_id: object) -> None:
        super().__init__(f"no review {review_id}")
