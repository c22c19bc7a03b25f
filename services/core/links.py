"""Signed acknowledgement links (pure): a token that lets one recipient acknowledge one document version without
signing in, until it expires. HS256 JWS (joserfc) with the deployment's `SMITS_LINK_SIGNING_KEY`; the notifier
signs it into a campaign e-mail, the engine checks it. Single use is the engine's: an acknowledgement is
recorded once, and a token whose acknowledgement is recorded is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from services.core.errors import Forbidden

AUDIENCE = "smits:acknowledge"
ALGORITHM = "HS256"
MAX_TOKEN = 2048
"""Characters of a token read at all (one this module signs is far shorter)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AckLink:
    """What a token allows: `recipient` acknowledges `version` of `document_id`, until `expires_at`."""

    recipient: str
    document_id: uuid.UUID
    version: int
    expires_at: datetime
    token_id: str


class LinkRefused(Forbidden):
    """A link that does not allow this (`link` says why: invalid, expired, other_version)."""

    def __init__(self, link: str, detail: str) -> None:
        super().__init__(detail, link=link)
        self.link = link


def _key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def sign(link: AckLink, *, secret: str, now: datetime) -> str:
    claims = {
        "aud": AUDIENCE,
        "sub": link.recipient,
        "doc": str(link.document_id),
        "ver": link.version,
        "iat": int(now.timestamp()),
        "exp": int(link.expires_at.timestamp()),
        "jti": link.token_id,
    }
    return jwt.encode({"alg": ALGORITHM}, claims, _key(secret))


def verify(token: str, *, secret: str, now: datetime) -> AckLink:
    """The link a token allows, if this deployment signed it and it has not expired; otherwise `LinkRefused`
    saying which (whether its version is still the one to acknowledge is the engine's to check)."""
    link = _read(token, secret)
    if link.expires_at <= now:
        raise LinkRefused(
            "expired", f"this link expired at {link.expires_at:%Y-%m-%d %H:%M UTC}: sign in to acknowledge instead"
        )
    return link


def _read(token: str, secret: str) -> AckLink:
    invalid = LinkRefused("invalid", "this link is not one smits signed (damaged or altered): sign in instead")
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        raise invalid
    try:
        claims: dict[str, Any] = jwt.decode(token, _key(secret), algorithms=[ALGORITHM]).claims
    except (JoseError, ValueError, TypeError) as exc:
        raise invalid from exc
    try:
        if claims["aud"] != AUDIENCE:
            raise invalid
        version, expires = claims["ver"], claims["exp"]
        if not isinstance(version, int) or not isinstance(expires, int) or not isinstance(claims["sub"], str):
            raise invalid
        return AckLink(
            recipient=claims["sub"],
            document_id=uuid.UUID(str(claims["doc"])),
            version=version,
            expires_at=datetime.fromtimestamp(expires, UTC),
            token_id=str(claims["jti"]),
        )
    except (KeyError, ValueError, OverflowError, OSError) as exc:
        raise invalid from exc
