"""`smits users`, `smits org-units`, `smits keys` and `smits audit`: identity administration from the
command line. Every change is audited as `cli:<operating-system user>` (whoever can run this against the
database is trusted with it; the audit log says who did what)."""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import DomainError
from services.core.identity import audit, passwords, store
from services.core.identity.model import Role, Scope
from services.core.settings import Settings

users_app = typer.Typer(no_args_is_help=True, help="People (principals) and their roles")
org_units_app = typer.Typer(no_args_is_help=True, help="Organisational units (a tree)")
keys_app = typer.Typer(no_args_is_help=True, help="API keys")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log")
T = TypeVar("T")


def operator() -> str:
    """How an operator at the command line appears in the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction; a domain error (unknown person, taken e-mail) exits 1 with its words."""
    from services.core.cli import in_transaction, settings_of

    settings: Settings = settings_of()
    try:
        return asyncio.run(in_transaction(settings, work))
    except DomainError as exc:
        typer.echo(f"smits: {exc.detail}", err=True)
        raise typer.Exit(1) from None


async def audited(session: AsyncSession, *, action: str, target: str, **detail: object) -> None:
    await audit.record(
        session,
        principal=operator(),
        method="cli",
        action=action,
        target=target,
        now=datetime.now(UTC),
        detail=detail,
    )


def _roles(values: list[str]) -> list[Role]:
    try:
        return [Role(value) for value in values]
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}; roles are {', '.join(r.value for r in Role)}") from exc


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="the address they sign in with")],
    name: Annotated[str, typer.Option(help="display name")],
    role: Annotated[list[str], typer.Option(help="role to grant; repeat for several")],
    org_unit: Annotated[list[str] | None, typer.Option(help="org unit to join; repeat for several")] = None,
    manager: Annotated[str | None, typer.Option(help="their manager's e-mail (escalation)")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read a local password from standard input (first line)")
    ] = False,
) -> None:
    """Create a person. Without --password-stdin they sign in through OpenID Connect only."""
    roles = _roles(role)
    hashed = None
    if password_stdin:
        try:
            hashed = passwords.hash_password(sys.stdin.readline().rstrip("\r\n"))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--password-stdin") from exc

    async def create(session: AsyncSession) -> str:
        row = await store.create_person(
            session,
            email=email,
            name=name,
            roles=roles,
            org_units=org_unit or [],
            manager=manager,
            password_hash=hashed,
            now=datetime.now(UTC),
        )
        await audited(
            session,
            action="user.create",
            target=f"principal:{row.email}",
            roles=",".join(row.roles),
            org_units=",".join(org_unit or []),
        )
        return f"{row.id}\t{row.email}\t{','.join(row.roles)}"

    typer.echo(_run(create))


@users_app.command("list")
def users_list() -> None:
    """Every principal: e-mail, name, roles, org units, manager."""
    for person in _run(store.list_people):
        fields = [person.email or "-", person.name, ",".join(person.roles), ",".join(person.org_units) or "-"]
        fields += [person.manager or "-", "disabled" if person.disabled else "active"]
        typer.echo("\t".join(fields))


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Option(help="the person who left")]) -> None:
    """End a person's sessions, revoke their keys and stop them signing in (their history stays theirs)."""

    async def disable(session: AsyncSession) -> str:
        row = await store.require_person(session, email)
        if row.disabled_at is not None:
            return f"{row.email} was already disabled"
        await store.disable(session, row, now=datetime.now(UTC))
        await audited(session, action="user.disable", target=f"principal:{row.email}")
        return f"disabled {row.email}: sessions ended, keys revoked"

    typer.echo(_run(disable))


@org_units_app.command("create")
def org_units_create(
    name: Annotated[str, typer.Option(help="unique name")],
    parent: Annotated[str | None, typer.Option(help="the unit above it")] = None,
    lead: Annotated[str | None, typer.Option(help="the unit lead's e-mail (escalation)")] = None,
) -> None:
    """Create an org unit."""

    async def create(session: AsyncSession) -> str:
        row = await store.create_unit(session, name=name, parent=parent, lead=lead, now=datetime.now(UTC))
        await audited(session, action="org_unit.create", target=f"org_unit:{row.name}", parent=parent, lead=lead)
        return f"{row.id}\t{row.name}"

    typer.echo(_run(create))


@org_units_app.command("list")
def org_units_list() -> None:
    for unit in _run(store.list_units):
        typer.echo(f"{unit.name}\t{unit.parent or '-'}\t{unit.lead or '-'}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what the key is for")],
    scope: Annotated[list[str], typer.Option(help="scope to grant; repeat for several")],
    owner: Annotated[
        str | None, typer.Option(help="the person the key acts as (within their roles); none: a service account")
    ] = None,
) -> None:
    """Create an API key and print it once. Only its hash is stored."""
    try:
        scopes = [Scope(value) for value in scope]
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}; scopes are {', '.join(s.value for s in Scope)}") from exc

    async def create(session: AsyncSession) -> str:
        key_id, key = await store.create_key(session, name=name, scopes=scopes, owner=owner, now=datetime.now(UTC))
        await audited(
            session,
            action="key.create",
            target=f"key:{key_id}",
            name=name,
            scopes=",".join(scopes),
            owner=owner or "service account",
        )
        return key

    typer.echo(_run(create))


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, name, scopes, owner, created, revoked (never the key itself)."""
    for key in _run(store.list_keys):
        revoked = f"\trevoked {key.revoked_at.isoformat()}" if key.revoked_at else ""
        typer.echo(f"{key.id}\t{key.name}\t{','.join(key.scopes)}\t{key.owner or 'service account'}{revoked}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[uuid.UUID, typer.Argument(help="id from `smits keys list`")]) -> None:
    """Revoke a key at once (idempotent)."""

    async def revoke(session: AsyncSession) -> str:
        info = await store.revoke_key(session, key_id, now=datetime.now(UTC))
        await audited(session, action="key.revoke", target=f"key:{key_id}", name=info.name)
        return f"revoked {info.id} ({info.name})"

    typer.echo(_run(revoke))


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; exit 1 naming the first record that does not fit."""
    count, broken = _run(audit.verify)
    if broken is not None:
        typer.echo(f"audit log BROKEN at record {broken.seq}: {broken.reason} ({count} records verified before it)")
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {count} records, chain and checkpoints verified")


@audit_app.command("export")
def audit_export(
    since: Annotated[datetime, typer.Option(help="records at or after this time (ISO 8601)")],
    output_format: Annotated[str, typer.Option("--format", help="jsonl (one record a line)")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="file to write (default: standard output)")] = None,
) -> None:
    """Evidence for auditors: every record since T, with its hashes, so the file can be re-verified."""
    if output_format != "jsonl":
        raise typer.BadParameter("only jsonl is supported", param_hint="--format")
    start = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def export(session: AsyncSession) -> int:
        written = 0
        out = output.open("wb") if output else sys.stdout.buffer
        try:
            async for row in audit.records(session):
                if row.at >= start:
                    out.write(audit.export_line(row) + b"\n")
                    written += 1
        finally:
            if output:
                out.close()
            else:
                out.flush()
        return written

    written = _run(export)
    typer.echo(f"{written} audit record(s) exported", err=True)
