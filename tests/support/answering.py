"""A scripted webhook endpoint for worker tests: an HTTP server on 127.0.0.1 that answers every request with an
async handler, and a webhook client (the real one, egress checks included) that resolves every host name to it.
So tests can tell subscriptions apart by host name (`http://slow1.example:{port}/hooks`) as they would by URL."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from services.notifier.egress import WebhookClient
from tests.support.processes import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    port: int
    client: WebhookClient

    def url(self, name: str) -> str:
        """The URL of subscription `name` (its host name), served by the handler."""
        return f"http://{name}.example:{self.port}/hooks"


async def _to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


@asynccontextmanager
async def answering(handler: Handler) -> AsyncIterator[Endpoint]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = WebhookClient([ipaddress.ip_network("127.0.0.1/32")], _to_loopback)
    try:
        yield Endpoint(port, client)
    finally:
        await client.aclose()
        await runner.cleanup()
