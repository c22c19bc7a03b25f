"""A lean webhook receiver for benchmarks: HTTP/1.1 keep-alive on asyncio, answers every POST with 200.

It runs as its own process (`python -m bench.receiver PORT`) so that its CPU is not charged to the code under
measurement, and it serves smits' notifier and the raw httpx POST loop alike, which makes the two comparable.
Control paths: `GET /stats` (count, first and last arrival), `POST /reset?record=1` (clear; keep every request
for `GET /dump` when `record=1`). Arrival times are `time.time()` taken when the request is complete.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class State:
    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.record = False
        self.records: list[dict[str, Any]] = []

    def reset(self, *, record: bool) -> None:
        self.__init__()  # type: ignore[misc]
        self.record = record


class Connection(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(head[0], headers, body)

    def handle(self, request_line: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        method, target, _ = request_line.split(" ", 2)
        if method == "POST" and target.startswith("/reset"):
            self.state.reset(record="record=1" in target)
            self.reply(b"{}")
        elif method == "GET" and target == "/stats":
            self.reply(orjson.dumps({"count": self.state.count, "first": self.state.first, "last": self.state.last}))
        elif method == "GET" and target == "/dump":
            self.reply(orjson.dumps(self.state.records))
        else:
            now = time.time()
            state = self.state
            state.count += 1
            state.first = state.first or now
            state.last = now
            if state.record:
                state.records.append({"at": now, "headers": headers, "body": body.decode()})
            self.transport.write(OK)

    def reply(self, payload: bytes) -> None:
        assert self.transport is not None
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        self.transport.write(head.encode() + payload)


async def serve(port: int) -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", port, backlog=1024)
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
