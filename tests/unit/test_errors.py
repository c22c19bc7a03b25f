"""Errors have one home: flows raise domain errors, mapped once to RFC 9457 problem types at the HTTP edge."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.core.errors import KINDS, PROBLEM_TYPES, DomainError, GuardRefused, Invalid, NotFound
from services.core.http import install_problem_handlers

SERVICES = Path(__file__).resolve().parents[2] / "services"
FLOWS = sorted({*SERVICES.glob("*/flows.py"), *SERVICES.glob("*/flows/*.py"), *SERVICES.glob("*/timers.py")})


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize("path", FLOWS, ids=[str(p.relative_to(SERVICES)) for p in FLOWS])
def test_no_flow_or_timer_knows_about_http(path: Path) -> None:
    http = {name for name in _imports(path) if name.startswith(("services.core.http", "fastapi", "starlette"))}
    assert not http, f"{path.name} imports {sorted(http)}: raise a domain error from the service's errors.py"


def test_there_are_flows_to_check() -> None:
    assert len(FLOWS) >= 5  # guards the guard: the globs still find the flow modules


@pytest.mark.parametrize(
    ("error", "status", "members"),
    [
        (NotFound("no review 7"), 404, {}),
        (GuardRefused("owner_assigned", "the review has no owner"), 409, {"guard": "owner_assigned"}),
        (Invalid("a plan is per organisational unit", field="org_unit"), 422, {"field": "org_unit"}),
    ],
    ids=["not-found", "guard", "invalid"],
)
async def test_each_kind_becomes_one_problem_type(error: DomainError, status: int, members: dict[str, str]) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/boom")
    problem = response.json()
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"] == PROBLEM_TYPES + type(error).kind
    assert problem["detail"] == error.detail
    assert {key: problem[key] for key in members} == members


def test_problem_types_are_distinct_and_stable() -> None:
    assert [kind.type_uri() for kind in KINDS] == [
        "https://smits.example/problems/not-found",
        "https://smits.example/problems/guard",
        "https://smits.example/problems/forbidden",
        "https://smits.example/problems/conflict",
        "https://smits.example/problems/invalid",
    ]
