"""`smits serve all` as a subprocess for the console's browser walks: org units and people created with the CLI
first (each person with a password), the server's log checked for tracebacks when it stops."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from services.core.settings import Settings
from tests.support.processes import SMITS, free_port, service_env, wait_ready

Person = tuple[str, Sequence[str], str]
"""(name, roles, org unit) of a person, keyed by e-mail."""


def smits_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Run one `smits` command; its standard output (a failure fails the test with its error output)."""
    done = subprocess.run(
        [SMITS, *args], env=dict(env), input=stdin.encode() if stdin else None, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@asynccontextmanager
async def serving_all(
    settings: Settings,
    log_dir: Path,
    *,
    units: Sequence[str],
    people: Mapping[str, Person],
    password: str,
    **env_vars: str,
) -> AsyncIterator[str]:
    """The base URL of `smits serve all` on the test's database and topics, sign-in required, with `people`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(settings, SMITS_AUTH_DISABLED="false", SMITS_PUBLIC_URL=base, **env_vars)
    for unit in units:
        await asyncio.to_thread(smits_cli, env, "org-units", "create", "--name", unit)
    for email, (name, roles, unit) in people.items():
        role_args = [arg for role in roles for arg in ("--role", role)]
        args = ["users", "create", "--email", email, "--name", name, *role_args, "--org-unit", unit]
        await asyncio.to_thread(smits_cli, env, *args, "--password-stdin", stdin=password)
    log = log_dir / "smits.log"
    with log.open("wb") as out:
        command = [SMITS, "serve", "all", "--port", str(port)]
        process = await asyncio.to_thread(subprocess.Popen, command, env=env, stdout=out, stderr=out)
        try:
            await asyncio.to_thread(wait_ready, base, process)
            yield base
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
