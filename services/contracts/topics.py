"""Topic names (after `SMITS_TOPIC_PREFIX`), as in the contract."""

from typing import Final

TRIGGERS: Final = "triggers"
TRIGGERS_DLT: Final = "triggers-dlt"
TRIGGERS_ACCEPTED: Final = "triggers.accepted"
REVIEWS_EVENTS: Final = "reviews.events"

ALL: Final = (TRIGGERS, TRIGGERS_DLT, TRIGGERS_ACCEPTED, REVIEWS_EVENTS)
