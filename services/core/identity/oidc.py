"""The OpenID Connect relying party: people sign in at the provider (authorization code flow with PKCE), and
programs call with the provider's JWT access tokens.

`OidcProvider.login_url` builds the provider's authorization URL and a `PendingLogin` to keep (server-side or
in a signed cookie) until the provider redirects back; `complete` checks the callback against it, redeems the
code and validates the ID token; `verify_bearer` validates an access token. Both return an `OidcIdentity`
whose roles are smits roles (`map_roles`). Tokens are checked with joserfc: the signature against the
provider's published keys (JWKS, asymmetric algorithms only; an unknown key id fetches the keys again, at most
once a minute, so the provider can rotate keys), `iss`, `aud`, `exp` (and `nbf`, `iat`) with a minute of
leeway. Everything from outside is bounded: 10 s per request to the provider, 256 KiB per answer, 16 KiB
per token, and the length of each claim kept.

A refused token or sign-in raises `InvalidToken` (its text says why and never contains the token); a provider
that cannot be reached or answers nonsense raises `ProviderUnavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

from services.core.settings import Settings

SMITS_ROLES = frozenset({"viewer", "contributor", "strategy_manager", "approver", "admin"})
"""The roles smits knows; a provider's role name is kept only if it is one of these or `role_map` maps it."""

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""Signature algorithms accepted: asymmetric only (never `none` or an HMAC keyed with public material)."""

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024
LEEWAY_S = 60
JWKS_REFETCH_INTERVAL_S = 60.0
MAX_ROLES = 1000
MAX_ROLE_CHARS = 256
MAX_SUBJECT_CHARS = 255
MAX_EMAIL_CHARS = 320
MAX_NAME_CHARS = 256
DEFAULT_SCOPE = "openid email profile"


class InvalidToken(Exception):
    """A token or a sign-in refused; the reason is in str() and never includes the token."""


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered something that is not a valid discovery document, key
    set or token response; the reason is in str()."""


@dataclass(frozen=True, kw_only=True)
class OidcIdentity:
    """Who the provider says signed in."""

    issuer: str
    subject: str
    email: str | None
    name: str | None
    roles: frozenset[str]
    """smits roles, after `role_map`."""


@dataclass(frozen=True, kw_only=True)
class PendingLogin:
    """Kept server-side (or in a signed cookie) between `login_url` and `complete`; it holds secrets."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str


@dataclass(frozen=True, kw_only=True)
class _Discovery:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]


def map_roles(value: object, role_map: Mapping[str, str]) -> frozenset[str]:
    """smits roles from a roles claim: a list of names or one space-separated string (anything else: none).
    A name in `role_map` becomes its smits role; an unmapped name is kept only if it is a smits role."""
    if isinstance(value, str):
        names: list[object] = list(value.split())
    elif isinstance(value, list):
        names = value
    else:
        return frozenset()
    if len(names) > MAX_ROLES:
        raise InvalidToken(f"the roles claim has more than {MAX_ROLES} entries")
    roles: set[str] = set()
    for name in names:
        if not isinstance(name, str) or len(name) > MAX_ROLE_CHARS:
            continue
        role = role_map.get(name, name)
        if role in SMITS_ROLES:
            roles.add(role)
    return frozenset(roles)


def safe_return_to(value: str) -> str:
    """`value` if it is a path on this site (`/...`, not `//host` or `/\\host`), else `/`: no open redirect."""
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char == "\\" for char in value):
        return "/"
    return value


class OidcProvider:
    """One OpenID Connect provider (issuer) and this application's client registration at it."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        roles_claim: str,
        role_map: Mapping[str, str],
        audience: str | None = None,
        http: httpx.AsyncClient | None = None,
        scope: str = DEFAULT_SCOPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = sorted({role for role in role_map.values() if role not in SMITS_ROLES})
        if unknown:
            raise ValueError(f"role_map maps to {unknown}, which are not smits roles ({sorted(SMITS_ROLES)})")
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self.roles_claim = roles_claim
        self.role_map = dict(role_map)
        self.audience = audience or client_id
        self.scope = scope
        self._clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._discovery_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()
        self._discovery: _Discovery | None = None
        self._keys: KeySet | None = None
        self._keys_fetched_at = float("-inf")

    async def aclose(self) -> None:
        """Close the HTTP client if this provider made it."""
        if self._own_http:
            await self._http.aclose()

    async def login_url(self, *, redirect_uri: str, return_to: str = "/") -> tuple[str, PendingLogin]:
        """The provider's authorization URL (code flow, PKCE S256, fresh state and nonce) and what `complete`
        needs to check the answer. `return_to` is kept only if it is a local path (else `/`)."""
        discovery = await self._discover()
        pending = PendingLogin(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=redirect_uri,
            return_to=safe_return_to(return_to),
        )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(pending.code_verifier.encode()).digest()).rstrip(b"=")
        url = httpx.URL(discovery.authorization_endpoint).copy_merge_params(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.scope,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": challenge.decode(),
                "code_challenge_method": "S256",
            }
        )
        return str(url), pending

    async def complete(self, *, pending: PendingLogin, params: Mapping[str, str]) -> OidcIdentity:
        """Who signed in, from the provider's redirect back (`params`: its query parameters): the state must
        match `pending`, the code is redeemed with the PKCE verifier and the ID token validated (signature,
        `iss`, `aud`/`azp`, `exp`, `iat`, `nonce`)."""
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise InvalidToken("the sign-in answer does not belong to this sign-in (state differs)")
        if "error" in params:
            raise InvalidToken(f"the provider refused the sign-in: {_word(params['error'])}")
        if "iss" in params and params["iss"] != self.issuer:  # RFC 9207: an answer from another provider
            raise InvalidToken("the sign-in answer names another issuer")
        code = params.get("code", "")
        if not code or len(code) > MAX_TOKEN_CHARS:
            raise InvalidToken("the sign-in answer has no usable authorization code")
        answer = await self._redeem(code, pending)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderUnavailable("the token endpoint answered without an ID token")
        claims = await self._validate(id_token, audience=self.client_id, nonce=pending.nonce)
        azp = claims.get("azp")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (azp is not None or len(audiences) > 1) and azp != self.client_id:
            raise InvalidToken("the ID token was issued to another client (azp)")
        return self._identity(claims)

    async def verify_bearer(self, token: str) -> OidcIdentity:
        """Who a JWT access token of this issuer stands for: signature, `iss`, `aud` (the audience setting),
        `exp` (and `nbf`, `iat` if present)."""
        return self._identity(await self._validate(token, audience=self.audience, nonce=None))

    async def _validate(self, token: str, *, audience: str, nonce: str | None) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("the token is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"the token's algorithm is not accepted (one of {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id is not a string")
        key = await self._key(kid, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("the token's signature does not verify") from None
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "value": audience},
            "sub": {"essential": True},
            "exp": {"essential": True},
        }
        if nonce is not None:
            options["iat"] = {"essential": True}
            options["nonce"] = {"essential": True, "value": nonce}
        registry = JWTClaimsRegistry(now=lambda: int(self._clock()), leeway=LEEWAY_S, **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("the token has expired") from None
        except ClaimError as exc:
            raise InvalidToken(f"the token's {_word(exc.claim)!r} claim is missing or not accepted") from None
        return claims

    def _identity(self, claims: Mapping[str, Any]) -> OidcIdentity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
            raise InvalidToken(f"the token's subject is empty or longer than {MAX_SUBJECT_CHARS} characters")
        email = _text_claim(claims, "email", MAX_EMAIL_CHARS)
        if claims.get("email_verified") is False:
            email = None  # an address the provider has not verified names nobody
        return OidcIdentity(
            issuer=self.issuer,
            subject=subject,
            email=email,
            name=_text_claim(claims, "name", MAX_NAME_CHARS),
            roles=map_roles(_claim(claims, self.roles_claim), self.role_map),
        )

    async def _redeem(self, code: str, pending: PendingLogin) -> dict[str, Any]:
        discovery = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self._client_secret
        if secret is not None and "client_secret_basic" in discovery.token_auth_methods:
            pair = f"{quote(self.client_id, safe='')}:{quote(secret, safe='')}"  # RFC 6749 2.3.1
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client_id
            if secret is not None:
                form["client_secret"] = secret
        status, answer = await self._fetch("the token endpoint", "POST", discovery.token_endpoint, form, headers)
        if status == 400 and answer.get("error") == "invalid_grant":
            raise InvalidToken("the provider refused the authorization code (invalid_grant)")
        if status != 200:
            raise ProviderUnavailable(f"the token endpoint answered HTTP {status} ({_word(answer.get('error'))})")
        return answer

    async def _discover(self) -> _Discovery:
        if self._discovery is not None:
            return self._discovery
        async with self._discovery_lock:
            if self._discovery is None:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                status, document = await self._fetch("the discovery document", "GET", url)
                if status != 200:
                    raise ProviderUnavailable(f"the discovery document answered HTTP {status}")
                self._discovery = self._discovery_of(document)
            return self._discovery

    def _discovery_of(self, document: Mapping[str, Any]) -> _Discovery:
        if document.get("issuer") != self.issuer:
            raise ProviderUnavailable("the discovery document names another issuer")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            secure = self.issuer.startswith("https://")
            if not isinstance(value, str) or not value.startswith("https://" if secure else ("https://", "http://")):
                raise ProviderUnavailable(f"the discovery document's {name} is not an http(s) URL")
            endpoints[name] = value
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        return _Discovery(
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            token_auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),
        )

    async def _key(self, kid: str | None, alg: str) -> Key:
        """The published key `kid`; an unknown one fetches the key set again (at most once a minute)."""
        key = _find_key(self._keys, kid)
        if key is None:
            seen = self._keys_fetched_at
            async with self._keys_lock:
                now = self._clock()
                if self._keys_fetched_at == seen and (self._keys is None or now - seen >= JWKS_REFETCH_INTERVAL_S):
                    self._keys_fetched_at = now  # a failed fetch counts too: no storm against a failing provider
                    self._keys = await self._fetch_keys()
            if self._keys is None:
                raise ProviderUnavailable("the provider's key set could not be fetched")
            key = _find_key(self._keys, kid)
        if key is None:
            raise InvalidToken("the token is signed with a key the provider does not publish")
        if key.alg not in (None, alg):
            raise InvalidToken("the token's algorithm does not match its key")
        return key

    async def _fetch_keys(self) -> KeySet:
        discovery = await self._discover()
        status, document = await self._fetch("the key set", "GET", discovery.jwks_uri)
        keys = document.get("keys")
        if status != 200 or not isinstance(keys, list):
            raise ProviderUnavailable(f"the key set answered HTTP {status} without a list of keys")
        signing = [
            key
            for key in keys
            if isinstance(key, dict) and key.get("use", "sig") == "sig" and key.get("kty") in {"RSA", "EC", "OKP"}
        ]
        try:
            return KeySet.import_key_set({"keys": signing})
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderUnavailable("the key set holds no usable signing key") from None

    async def _fetch(
        self,
        what: str,
        method: str,
        url: str,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object) of one bounded request: 10 s in all, 256 KiB of answer."""
        body = bytearray()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                async with self._http.stream(method, url, data=form, headers=headers) as response:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise ProviderUnavailable(f"{what} answered more than {MAX_ANSWER_BYTES} bytes")
                    status = response.status_code
        except TimeoutError:
            raise ProviderUnavailable(f"{what} did not answer within {TIMEOUT_S:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{what} could not be reached ({type(exc).__name__})") from None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{what} answered HTTP {status} without a JSON object")
        return status, document


def _find_key(keys: KeySet | None, kid: str | None) -> Key | None:
    if keys is None:
        return None
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    return next((key for key in keys.keys if key.kid == kid), None)


def _claim(claims: Mapping[str, Any], name: str) -> object:
    """A claim by name; a dotted name not present as such is a path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text_claim(claims: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = claims.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidToken(f"the token's {name!r} claim is not a string of at most {limit} characters")
    return value


def _word(value: object) -> str:
    """A provider-supplied error code or claim name, safe to put in a message (bounded, plain characters)."""
    text = value if isinstance(value, str) else "no error code"
    return "".join(char for char in text[:64] if char.isalnum() or char in "_-.:/,") or "unknown"


def provider_from_settings(settings: Settings, *, http: httpx.AsyncClient | None = None) -> OidcProvider | None:
    """The provider `SMITS_OIDC_*` configure, or None when no issuer is set."""
    if settings.oidc_issuer is None or settings.oidc_client_id is None:
        return None
    secret = settings.oidc_client_secret
    return OidcProvider(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        roles_claim=settings.oidc_roles_claim,
        role_map=settings.oidc_role_map,
        audience=settings.oidc_audience,
        http=http,
    )
