"""Identity: who the caller is (people and service accounts), how they proved it (session, bearer JWT, API key),
what their roles let them do, and the tamper-evident audit log of what they did.

`model` is pure (no I/O); `store` holds every query; the HTTP edge is `services.core.auth` (the caller of a request)
`routes` (sign-in, `/v1/me`, people, org units, keys) and `oidc` (the OpenID Connect relying party)."""
