"""Metric labels come from known sets only (issue 12, class 6): a client's made-up method or path never
creates a new series."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.core.http import install_problem_handlers, install_request_middleware

KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}

TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&'*+-.^_`|~", min_size=1, max_size=20)
SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_request_middleware(app)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


APP = _app()
TEMPLATES = {"/items/{item_id}", "unmatched"}


def _series() -> set[tuple[str, ...]]:
    return {
        (sample.labels["method"], sample.labels["route"], sample.labels["status"])
        for metric in REGISTRY.collect()
        if metric.name == "smits_http_requests"
        for sample in metric.samples
        if sample.name == "smits_http_requests_total"
    }


async def _send(method: str, path: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://smits") as client:
        await client.request(method, path)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=TOKEN, segments=st.lists(SEGMENT, min_size=1, max_size=4))
def test_made_up_methods_and_paths_create_no_new_series(method: str, segments: list[str]) -> None:
    before = _series()  # the registry is the process's: other tests' series are not ours to judge
    asyncio.run(_send(method, "/" + "/".join(segments)))
    for series_method, route, status in _series() - before:
        assert series_method in KNOWN_METHODS, series_method
        assert route in TEMPLATES, route  # a route template, never the raw path
        assert 100 <= int(status) <= 599


def test_an_unknown_method_is_counted_as_other() -> None:
    asyncio.run(_send("BREW", "/items/1"))
    asyncio.run(_send("PROPFIND", "/no/such/path"))
    labels = _series()
    assert ("other", "/items/{item_id}", "405") in labels or ("other", "unmatched", "405") in labels
    assert not {series for series in labels if series[0] in {"BREW", "PROPFIND"}}
    assert not {series for series in labels if series[1] == "/no/such/path"}


def test_a_client_request_id_is_kept_only_when_short_and_plain() -> None:
    async def ids() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://smits") as client:
            offered = ["abc-123", "x" * 5000, "a b\tc"]
            return [
                (await client.get("/items/1", headers={"x-request-id": value})).headers["x-request-id"]
                for value in offered
            ]

    kept, long, spaced = asyncio.run(ids())
    assert kept == "abc-123"
    assert len(long) == 32  # a fresh id: a client cannot put 5,000 characters into every log line
    assert spaced != "a b\tc"
