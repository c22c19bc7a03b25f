"""A request the body guard refuses (a NUL, a chunked body over the cap) gets its 4xx over a real socket:
no connection reset while the client is still sending, and no `ClientDisconnect` logged as an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel
from structlog.testing import capture_logs

from services.core.http import install_problem_handlers, install_request_middleware
from services.core.limits import RequestGuard
from tests.support.processes import free_port

LIMIT = 64 * 1024
CHUNK = b" " * 65536


class Note(BaseModel):
    text: str = ""


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_request_middleware(app)
    app.add_middleware(RequestGuard, default=LIMIT, limits={})

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}  # reads the body itself, as POST /v1/triggers does

    @app.post("/model")
    async def model(note: Note) -> dict[str, int]:
        return {"chars": len(note.text)}

    return app


@pytest.fixture
async def base() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(_app(), host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _body(first: bytes, chunks: int) -> Iterator[bytes]:
    """A chunked body (no Content-Length): `first`, then `chunks` more 64 KiB chunks (24 MiB for 384)."""
    yield first
    for _ in range(chunks):
        yield CHUNK


@pytest.mark.parametrize("route", ["/raw", "/model"])
@pytest.mark.parametrize(
    ("first", "status"),
    [(b'{"text": "a\\u0000b', 400), (b'{"text": "', 413)],
    ids=["nul", "oversize"],
)
async def test_a_refused_body_gets_its_answer_cleanly(
    base: str, route: str, first: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with capture_logs() as logs:
        async with httpx.AsyncClient(timeout=30) as client:
            # a sync iterator, sent from a thread: the client keeps writing while the server answers
            response = await asyncio.to_thread(
                httpx.post,
                f"{base}{route}",
                content=_body(first, 384),
                headers={"content-type": "application/json"},
                timeout=30,
            )
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert (await client.get(f"{base}/missing")).status_code == 404  # the server is fine
    errors = [entry for entry in logs if entry["log_level"] in {"error", "critical", "exception"}]
    assert not errors, errors
    assert "ClientDisconnect" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
