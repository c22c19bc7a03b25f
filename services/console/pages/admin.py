"""Admin: people (create with roles and org units, disable, clearance), org units, API keys (a new key shown
once, revoke) and the audit log, searched and paged."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from services.console.api import ApiProblem
from services.console.forms import placed
from services.console.web import Acting, ConsoleRoute, Page, Viewing, done
from services.core.identity.model import Role, Scope

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

ROLES = tuple(role.value for role in Role)
SCOPES = tuple(scope.value for scope in Scope)
AUDIT_PAGE = 50
AN_ADDRESS = "Give an e-mail address, like ana@corp.example."
WORDS = {"email": AN_ADDRESS, "manager": AN_ADDRESS, "lead": AN_ADDRESS, "owner": AN_ADDRESS}
PERSON_BOXES = ("email", "name", "roles", "org_units", "manager", "password")
UNIT_BOXES = ("name", "parent", "lead")
KEY_BOXES = ("name", "scopes", "owner")
AUDIT_BOXES = ("principal", "target", "since")
AUDIT_WORDS = {"cursor": "that page link is not one smits made; start again from the newest records"}
Text = Annotated[str, Query(max_length=400)]


def _kept(action: Acting, *, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """What the person typed, to fill the form again (never the CSRF token nor a password)."""
    return {key: value for key, value in action.form.items() if key not in ("csrf_token", "password", *leave_out)}


def _refused(problem: ApiProblem) -> bool:
    """A refusal to show beside the form it came from (a server error is an error page)."""
    return problem.status < 500


# --- people -------------------------------------------------------------------------------------------------


async def users_page(
    page: Page,
    *,
    status: int = 200,
    problem: ApiProblem | None = None,
    where: str = "",
    values: Mapping[str, str] | None = None,
    chosen: Mapping[str, list[str]] | None = None,
) -> HTMLResponse:
    people = await page.api.get("/v1/users")
    units = await page.api.get("/v1/org-units")
    return page.render(
        "admin_users.html",
        status=status,
        section="users",
        people=sorted(people, key=lambda person: (person["disabled"], (person["email"] or person["name"]).lower())),
        units=[unit["name"] for unit in units],
        roles=ROLES,
        problem=problem,
        where=where,
        **placed(problem.by_field() if problem and where == "create" else {}, PERSON_BOXES, WORDS),
        values=values or {},
        chosen=chosen or {},
    )


@router.get("/admin")
async def users(page: Viewing) -> HTMLResponse:
    return await users_page(page)


@router.post("/admin/users")
async def create_user(action: Acting) -> Response:
    body: dict[str, Any] = {
        "email": action.text("email"),
        "name": action.text("name"),
        "roles": action.lists.get("roles", []),
        "org_units": action.lists.get("org_units", []),
    }
    if action.text("manager"):
        body["manager"] = action.text("manager")
    if action.form.get("password"):
        body["password"] = action.form["password"]  # as typed: its spaces count
    try:
        created = await action.api.send("POST", "/v1/users", body)
    except ApiProblem as problem:
        if not _refused(problem):
            raise
        chosen = {name: action.lists.get(name, []) for name in ("roles", "org_units")}
        kept = _kept(action, leave_out=("roles", "org_units"))
        return await users_page(
            action, status=problem.status, problem=problem, where="create", values=kept, chosen=chosen
        )
    how = "signs in with the password you set" if "password" in body else "signs in through your organisation"
    return done("/admin", f"Created {created['email']} ({', '.join(created['roles'])}); they {how}.")


async def _person_action(action: Acting, email: str, path: str, body: object, message: str) -> Response:
    try:
        await action.api.send("POST", f"/v1/users/{quote(email, safe='')}/{path}", body)
    except ApiProblem as problem:
        if not _refused(problem):
            raise
        return await users_page(action, status=problem.status, problem=problem, where="people")
    return done("/admin", message)


@router.get("/admin/users/{email}/disable")
async def confirm_disable(email: str, page: Viewing) -> HTMLResponse:
    """Disabling cannot be undone from smits: the person is asked to confirm on a page of its own."""
    return page.render(
        "confirm.html",
        section="users",
        title=f"Disable {email}?",
        consequences=[
            "Their sessions end and every API key they own is revoked, at once.",
            "They can no longer sign in, with a password or through your organisation.",
            "What they did stays theirs in the audit log and on the reviews' timelines.",
        ],
        action=f"/admin/users/{quote(email, safe='')}/disable",
        button=f"Disable {email}",
        back="/admin",
    )


@router.post("/admin/users/{email}/disable")
async def disable_user(email: str, action: Acting) -> Response:
    message = f"Disabled {email}: their sessions ended, their keys are revoked and they can no longer sign in."
    return await _person_action(action, email, "disable", None, message)


@router.post("/admin/users/{email}/clearance")
async def set_clearance(email: str, action: Acting) -> Response:
    cleared = action.text("cleared_restricted") == "true"
    message = (
        f"{email} is cleared for all restricted (need-to-know) reviews."
        if cleared
        else f"{email} is no longer cleared for all restricted reviews, only for those naming them, their role or unit."
    )
    return await _person_action(action, email, "clearance", {"cleared_restricted": cleared}, message)


# --- org units ----------------------------------------------------------------------------------------------


async def units_page(
    page: Page, *, status: int = 200, problem: ApiProblem | None = None, values: Mapping[str, str] | None = None
) -> HTMLResponse:
    units = await page.api.get("/v1/org-units")
    return page.render(
        "admin_units.html",
        status=status,
        section="units",
        units=sorted(units, key=lambda unit: unit["name"].lower()),
        problem=problem,
        **placed(problem.by_field() if problem else {}, UNIT_BOXES, WORDS),
        values=values or {},
    )


@router.get("/admin/org-units")
async def units(page: Viewing) -> HTMLResponse:
    return await units_page(page)


@router.post("/admin/org-units")
async def create_unit(action: Acting) -> Response:
    body = {key: action.text(key) for key in ("name", "parent", "lead") if action.text(key)}
    body.setdefault("name", "")
    try:
        created = await action.api.send("POST", "/v1/org-units", body)
    except ApiProblem as problem:
        if not _refused(problem):
            raise
        return await units_page(action, status=problem.status, problem=problem, values=_kept(action))
    under = f" under {created['parent']}" if created["parent"] else ""
    return done("/admin/org-units", f"Created the org unit {created['name']}{under}.")


# --- API keys -----------------------------------------------------------------------------------------------


async def keys_page(
    page: Page,
    *,
    status: int = 200,
    problem: ApiProblem | None = None,
    where: str = "",
    values: Mapping[str, str] | None = None,
    chosen: Mapping[str, list[str]] | None = None,
    created: Mapping[str, Any] | None = None,
) -> HTMLResponse:
    keys = await page.api.get("/v1/keys")
    return page.render(
        "admin_keys.html",
        status=status,
        section="keys",
        keys=sorted(keys, key=lambda key: (key["revoked_at"] is not None, key["name"].lower())),
        scopes=SCOPES,
        problem=problem,
        where=where,
        **placed(problem.by_field() if problem and where == "create" else {}, KEY_BOXES, WORDS),
        values=values or {},
        chosen=chosen or {},
        created=created,
    )


@router.get("/admin/keys")
async def keys(page: Viewing) -> HTMLResponse:
    return await keys_page(page)


@router.post("/admin/keys")
async def create_key(action: Acting) -> Response:
    body: dict[str, Any] = {"name": action.text("name"), "scopes": action.lists.get("scopes", [])}
    if action.text("owner"):
        body["owner"] = action.text("owner")
    try:
        created = await action.api.send("POST", "/v1/keys", body)
    except ApiProblem as problem:
        if not _refused(problem):
            raise
        chosen = {"scopes": action.lists.get("scopes", [])}
        kept = _kept(action, leave_out=("scopes",))
        return await keys_page(
            action, status=problem.status, problem=problem, where="create", values=kept, chosen=chosen
        )
    return await keys_page(action, status=201, created=created)


@router.get("/admin/keys/{key_id}/revoke")
async def confirm_revoke(key_id: uuid.UUID, page: Viewing) -> HTMLResponse:
    """Revoking cannot be undone: the person is asked to confirm on a page of its own."""
    keys = await page.api.get("/v1/keys")
    key = next((key for key in keys if key["id"] == str(key_id)), None)
    if key is None:
        raise ApiProblem(status=404, title="Not Found", detail=f"no API key {key_id}")
    return page.render(
        "confirm.html",
        section="keys",
        title=f"Revoke the key “{key['name']}”?",
        consequences=[
            f"Whatever uses it ({key['owner'] or 'a service account'}, {', '.join(key['scopes'])}) is refused "
            "from its next request on.",
            "A revoked key cannot be restored: create a new one if it is needed again.",
        ],
        action=f"/admin/keys/{key_id}/revoke",
        button="Revoke the key",
        back="/admin/keys",
    )


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: uuid.UUID, action: Acting) -> Response:
    try:
        revoked = await action.api.send("DELETE", f"/v1/keys/{key_id}")
    except ApiProblem as problem:
        if not _refused(problem):
            raise
        return await keys_page(action, status=problem.status, problem=problem, where="keys")
    return done("/admin/keys", f"Revoked the key “{revoked['name']}”: it is refused from its next request on.")


# --- audit log ----------------------------------------------------------------------------------------------


def _since(value: str) -> str:
    """A date from the form (`2026-11-24`) as the start of that day in UTC; any other text as typed (the API
    takes an instant with its time zone, and says so when it is not one)."""
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value}T00:00:00+00:00"
    return value


@router.get("/admin/audit")
async def audit(
    page: Viewing,
    principal: Text = "",
    target: Text = "",
    since: Text = "",
    cursor: Annotated[str, Query(max_length=40)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = AUDIT_PAGE,
) -> HTMLResponse:
    filters = {"principal": principal.strip(), "target": target.strip(), "since": since.strip()}
    query: dict[str, str | int] = {**filters, "since": _since(filters["since"]), "cursor": cursor, "limit": limit}
    problem: ApiProblem | None = None
    try:
        found = await page.api.get("/v1/audit", query)
    except ApiProblem as problem_found:
        if problem_found.status >= 500 or problem_found.status == 403:
            raise
        problem, found = problem_found, {"records": [], "next_cursor": None}
    shown = {key: value for key, value in filters.items() if value}
    if limit != AUDIT_PAGE:
        shown["limit"] = str(limit)
    next_cursor = found["next_cursor"]
    return page.render(
        "admin_audit.html",
        status=problem.status if problem else 200,
        section="audit",
        records=found["records"],
        filters=filters,
        problem=problem,
        **placed(problem.by_field() if problem else {}, AUDIT_BOXES, AUDIT_WORDS),
        paged=bool(cursor),
        first_page=urlencode(shown),
        next_page=urlencode({**shown, "cursor": next_cursor}) if next_cursor else None,
    )
